"""Per-session memory from two bench/mem_probe.py snapshots: where the growth was allocated.

    .venv/bin/python -m bench.bridge_bench --sessions 100 --seconds 10 --paths bare,platform \\
        --tracemalloc /tmp/mem
    .venv/bin/python -m bench.memory_report /tmp/mem/platform-100 --sessions 100

Compares the first snapshot in the folder (one warm-up session done, none open) with the
last (every session streaming) and prints, per session: RSS growth, traced (Python heap)
growth, the rest (RSS - traced: C libraries' own mallocs such as OpenSSL and zlib, allocator
slack), then the largest growths grouped by ``--group`` (``filename``, ``lineno`` or
``traceback``; with ``--root`` a traceback is cut at its first frame under that folder, so
allocations made by libraries on our behalf are charged to our line that asked).
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from collections import defaultdict
from pathlib import Path


def _snapshots(folder: Path) -> list[Path]:
    return sorted(folder.glob("snap-*.pickle"), key=lambda p: int(p.stem.split("-")[1]))


def _meta(pickle: Path) -> dict[str, int]:
    data: dict[str, int] = json.loads(pickle.with_suffix(".json").read_text())
    return data


def _our_frame(trace: tracemalloc.Traceback, root: str) -> str:
    """The innermost frame under ``root`` (our code), else the innermost frame."""
    for frame in reversed(trace):  # most recent call first
        if root in frame.filename and "/.venv/" not in frame.filename:
            return f"{frame.filename.split(root)[-1]}:{frame.lineno}"
    frame = trace[-1]
    return f"{frame.filename}:{frame.lineno}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--group", choices=["filename", "lineno", "traceback"], default="lineno")
    parser.add_argument("--root", default="", help="charge each trace to its frame under this")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    paths = _snapshots(args.folder)
    if len(paths) < 2:
        raise SystemExit(f"need two snapshots in {args.folder}, found {len(paths)}")
    first, last = paths[0], paths[-1]
    before, after = _meta(first), _meta(last)
    n = args.sessions
    rss = (after["rss_kib"] - before["rss_kib"]) / n
    traced = (after["traced"] - before["traced"]) / 1024 / n
    objects = (after["objects"] - before["objects"]) / n
    print(f"{args.folder.name}: per session RSS {rss:.0f} KiB, traced {traced:.0f} KiB, ")
    print(f"  untraced (C allocations, allocator slack) {rss - traced:.0f} KiB, ")
    print(f"  gc-tracked objects {objects:.0f}")
    old = tracemalloc.Snapshot.load(str(first))
    new = tracemalloc.Snapshot.load(str(last))
    if args.root:
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for stat in new.compare_to(old, "traceback"):
            key = _our_frame(stat.traceback, args.root)
            totals[key][0] += stat.size_diff
            totals[key][1] += stat.count_diff
        rows = sorted(totals.items(), key=lambda kv: -abs(kv[1][0]))[: args.top]
        for key, (size, count) in rows:
            print(f"{size / 1024 / n:9.1f} KiB {count / n:8.1f} blocks  {key}")
        return
    for stat in new.compare_to(old, args.group)[: args.top]:
        where = stat.traceback.format(limit=1 if args.group != "traceback" else 6)
        print(f"{stat.size_diff / 1024 / n:9.1f} KiB {stat.count_diff / n:8.1f} blocks")
        for line in where:
            print("    " + line.strip())


if __name__ == "__main__":
    main()
