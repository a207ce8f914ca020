"""The Live emulator for bench/soak.py: random faults per connection, steered over stdin.

    python -m bench.soak_emulator --seed 1 --cert-dir DIR

Prints `URL <base url>` and `CERT <path>`, then reads commands, one a line:
`FAULTS` (from now on every new connection draws a random fault), `CLEAN` (no more
faults), `STATS` (print `STATS <json>`: connections, the faults drawn and what the
connections went through) and `STOP` (or end of input). Faults are the emulator's own
(`Faults`): a 1011 close, a TCP drop or a black hole some seconds after `setupComplete`.
goAways come from a short connection lifetime (every connection that lives long enough
gets one), stalls from the per-turn rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from voice_platform.live_emulator.faults import FaultRegistry, Faults
from voice_platform.live_emulator.testing import running_emulator

# Weights of one new connection's fault; most connections are healthy.
FAULT_WEIGHTS = {"close_1011": 10, "drop": 10, "black_hole": 5, "none": 75}


class RandomFaults(FaultRegistry):
    """While `enabled`, every connection without faults of its own draws one at random."""

    def __init__(self, rng: random.Random, earliest: float, latest: float) -> None:
        super().__init__(Faults())
        self.rng = rng
        self.earliest, self.latest = earliest, latest
        self.enabled = False
        self.drawn: Counter[str] = Counter()

    def for_connection(self, header: str | None) -> Faults:
        if header or not self.enabled:
            return super().for_connection(header)
        kind = self.rng.choices(list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values()))[0]
        self.drawn[kind] += 1
        at = self.rng.uniform(self.earliest, self.latest)
        if kind == "close_1011":
            return Faults(close_at=at, close_code=1011)
        if kind == "drop":
            return Faults(drop_at=at)
        if kind == "black_hole":
            return Faults(black_hole_at=at)
        return Faults()


def stats(emulator: Any, faults: RandomFaults) -> dict[str, Any]:
    records = emulator.recorder.sessions
    closed_by = Counter(r.closed_by or "open" for r in records)
    return {
        "connections": len(records),
        "resumed_connections": sum(1 for r in records if r.resumed),
        "faults_drawn": dict(faults.drawn),
        "closed_by": dict(closed_by),
        "fault_closes": sum(1 for r in records if r.closed_by == "fault" and not r.black_holed),
        "black_holes": sum(1 for r in records if r.black_holed),
        "go_aways": sum(1 for r in records if r.go_away_sent),
        "empty_turns": sum(r.empty_turns_sent for r in records),
        "silent_turns": sum(r.silent_turns for r in records),
        "tool_calls": sum(len(r.tool_calls) for r in records),
    }


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    async with running_emulator(
        port=0,
        cert_dir=Path(args.cert_dir),
        pace=1.0,
        record=False,  # hours of audio frames would only fill memory
        connection_lifetime=args.lifetime,
        go_away_notice=args.go_away_notice,
        random_seed=args.seed,
        empty_turn_rate=args.empty_turn_rate,
        silent_turn_rate=args.silent_turn_rate,
    ) as emu:
        faults = RandomFaults(rng, args.earliest, args.latest)
        emu.emulator.faults = faults
        print(f"URL {emu.base_url}", flush=True)
        print(f"CERT {emu.cert_path}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "FAULTS":
                faults.enabled = True
            elif line == "CLEAN":
                faults.enabled = False
            elif line == "STATS":
                print("STATS " + json.dumps(stats(emu.emulator, faults)), flush=True)
            elif line in ("STOP", ""):
                return


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cert-dir", required=True)
    parser.add_argument("--lifetime", type=float, default=120.0)
    parser.add_argument("--go-away-notice", type=float, default=15.0)
    parser.add_argument("--earliest", type=float, default=3.0, help="earliest fault, s")
    parser.add_argument("--latest", type=float, default=60.0, help="latest fault, s")
    parser.add_argument("--empty-turn-rate", type=float, default=0.02)
    parser.add_argument("--silent-turn-rate", type=float, default=0.005)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
