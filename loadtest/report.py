"""The final report of a run: one JSON-ready dict, and the same as a table for stdout."""

from __future__ import annotations

import itertools
from typing import Any

from loadtest.config import LoadConfig
from loadtest.server import MIB
from loadtest.stats import RunStats, ServerSample

REPORT_VERSION = 1
MIXED = "mixed processes: not comparable; use --server-pid per process"


def _mib(value: float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def _server(samples: list[ServerSample], peak_sessions: int, reason: str) -> dict[str, Any]:
    """CPU and memory figures from the readings; only readings of one process are ever
    subtracted or compared (behind a balancer, /metrics answers from any process)."""
    if len(samples) < 2:
        return {"measured": False, "reason": reason}
    processes = len({s.process for s in samples})
    rates = [
        (b.cpu_seconds - a.cpu_seconds) / (b.at - a.at) * 100
        for a, b in itertools.pairwise(samples)
        if a.process == b.process
        and a.cpu_seconds is not None
        and b.cpu_seconds is not None
        and b.at > a.at
    ]
    rss = [s.rss_bytes for s in samples if s.rss_bytes is not None]
    figures: dict[str, Any] = {
        "measured": True,
        "samples": len(samples),
        "processes": processes,
        "comparable": processes == 1,
        "cpu_percent_peak": round(max(rates), 1) if rates else None,
        "rss_peak_mib": _mib(max(rss)) if rss else None,
    }
    if processes > 1:
        # A process's peak is still one process's; means, baselines and anything per
        # session would mix processes, and one process serves only some of the sessions.
        return {
            **figures,
            "note": MIXED,
            "cpu_percent_mean": None,
            "rss_baseline_mib": None,
            "rss_end_mib": None,
            "memory_per_session_mib": None,
        }
    timed = [s for s in samples if s.cpu_seconds is not None]
    mean = None
    if len(timed) >= 2 and timed[-1].at > timed[0].at:
        cpu = (timed[-1].cpu_seconds or 0.0) - (timed[0].cpu_seconds or 0.0)
        mean = round(cpu / (timed[-1].at - timed[0].at) * 100, 1)
    baseline = samples[0].rss_bytes  # None when the first reading had none: no baseline
    per_session = None
    if baseline is not None and rss and peak_sessions:
        per_session = round((max(rss) - baseline) / peak_sessions / MIB, 3)
    return {
        **figures,
        "cpu_percent_mean": mean,
        "rss_baseline_mib": _mib(baseline),
        "rss_end_mib": _mib(samples[-1].rss_bytes),
        "memory_per_session_mib": per_session,
    }


def build(
    config: LoadConfig,
    stats: RunStats,
    *,
    elapsed: float,
    server_source: str | None,
    server_reason: str,
    generator_cpu_percent: float,
) -> dict[str, Any]:
    frame_budget_ms = float(config.frame_ms)
    send_lag = stats.send_lag.summary()
    loop_lag = stats.loop_lag.summary()
    behind = any((s["p99_ms"] or 0) > frame_budget_ms for s in (send_lag, loop_lag) if s["count"])
    if config.echo and stats.echoes:
        added: dict[str, Any] = {
            "measured": True,
            "what": "round trip of a stamped frame, caller -> platform -> echo emulator -> "
            "platform -> caller; up/down split at the emulator's receipt stamp",
            "round_trip": stats.frame_rtt.summary(),
            "up": stats.frame_up.summary(),
            "down": stats.frame_down.summary(),
        }
    else:
        added = {
            "measured": False,
            "reason": "needs --echo against an emulator started with --echo-frames"
            if not config.echo
            else "no echoed frame came back: is the emulator started with --echo-frames?",
        }
    errors_total = sum(stats.errors.values())
    rate = stats.error_rate()
    return {
        "report_version": REPORT_VERSION,
        "target": config.target,
        "config": {
            "callers": config.callers,
            "spawn_rate": config.spawn_rate,
            "duration_s": config.duration,
            "turns_per_call": config.turns,
            "frame_ms": config.frame_ms,
            "pause_s": config.pause,
            "barge_in_every": config.barge_in_every,
            "tool_every": config.tool_every,
            "utterance_s": round(len(config.utterance) / 2 / 16_000, 2),
            "echo": config.echo,
        },
        "elapsed_s": round(elapsed, 1),
        "callers_spawned": stats.callers_spawned,
        "sessions": {
            "attempted": stats.sessions_attempted,
            "started": stats.sessions_started,
            "completed": stats.sessions_completed,
            "peak_concurrent": stats.sessions_open_peak,
            "ended_reasons": dict(stats.ended_reasons),
        },
        "turns": {
            "total": stats.turns,
            "spoken": stats.turns_spoken,
            "answered": stats.turns_answered,
            "tool_turns": stats.tool_turns,
            "tool_calls_started": stats.tool_calls_started,
            "tool_calls_finished": stats.tool_calls_finished,
            "barge_ins": stats.barge_ins,
            "interruptions": stats.interruptions,
        },
        "latency": {
            "turn": stats.turn_latency.summary(),
            "tool_turn": stats.tool_turn_latency.summary(),
            "session_start": stats.session_start.summary(),
            "token_mint": stats.token_mint.summary(),
        },
        "frames": {"sent": stats.frames_sent, "echoed": stats.echoes, "added_latency": added},
        "errors": {
            "total": errors_total,
            "rate": round(rate, 4),
            "max_rate": config.max_error_rate,
            "by_code": dict(sorted(stats.errors.items())),
        },
        "warnings": dict(sorted(stats.warnings.items())),
        "server": {
            "source": server_source,
            **_server(stats.server, stats.sessions_open_peak, server_reason),
        },
        "generator": {
            "cpu_percent": round(generator_cpu_percent, 1),
            "send_lag": send_lag,
            "loop_lag": loop_lag,
            "fell_behind": behind,
        },
        "passed": rate <= config.max_error_rate,
    }


def _ms(summary: dict[str, Any]) -> str:
    if not summary["count"]:
        return "-"
    keys = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    return " / ".join(
        f"{summary[k]:.0f}" if summary[k] >= 10 else f"{summary[k]:.1f}" for k in keys
    )


def _or_dash(value: object) -> str:
    return "-" if value is None else f"{value}"


def table(report: dict[str, Any]) -> str:
    """The report as aligned `figure  value` lines."""
    s, t, lat = report["sessions"], report["turns"], report["latency"]
    added, server, gen = report["frames"]["added_latency"], report["server"], report["generator"]
    errors = report["errors"]
    rows: list[tuple[str, str]] = [
        ("target", report["target"]),
        ("callers / elapsed", f"{report['callers_spawned']} / {report['elapsed_s']} s"),
        ("sessions attempted/started/completed",
         f"{s['attempted']} / {s['started']} / {s['completed']} (peak {s['peak_concurrent']})"),
        ("turns (spoken, answered)", f"{t['total']} ({t['spoken']}, {t['answered']})"),
        ("barge-ins / interruptions", f"{t['barge_ins']} / {t['interruptions']}"),
        ("tool turns / tool calls finished", f"{t['tool_turns']} / {t['tool_calls_finished']}"),
        ("turn latency ms p50/p95/p99/max", _ms(lat["turn"])),
        ("tool turn latency ms", _ms(lat["tool_turn"])),
        ("session start ms", _ms(lat["session_start"])),
        ("token mint ms", _ms(lat["token_mint"])),
    ]  # fmt: skip
    if added["measured"]:
        rows += [
            ("added latency per frame ms (rtt)", _ms(added["round_trip"])),
            ("  up / down p50 ms", f"{added['up']['p50_ms']} / {added['down']['p50_ms']}"),
        ]
    else:
        rows.append(("added latency per frame", f"not measured: {added['reason']}"))
    by_code = ", ".join(f"{k} {v}" for k, v in errors["by_code"].items()) or "none"
    rows.append(("errors (rate)", f"{errors['total']} ({errors['rate']:.2%}): {by_code}"))
    if server["measured"] and not server["comparable"]:
        rows += [
            (f"server CPU / RSS ({server['source']})",
             f"{server['note']} ({server['processes']} processes answered)"),
            ("  busiest process: CPU % peak / RSS MiB peak",
             f"{_or_dash(server['cpu_percent_peak'])} / {_or_dash(server['rss_peak_mib'])}"),
        ]  # fmt: skip
    elif server["measured"]:
        rows += [
            (f"server CPU % mean/peak ({server['source']})",
             f"{_or_dash(server['cpu_percent_mean'])} / {_or_dash(server['cpu_percent_peak'])}"),
            ("server RSS MiB base/peak/end",
             " / ".join(_or_dash(server[k])
                        for k in ("rss_baseline_mib", "rss_peak_mib", "rss_end_mib"))),
            ("memory per session MiB", _or_dash(server["memory_per_session_mib"])),
        ]  # fmt: skip
    else:
        rows.append(("server CPU / RSS", f"not measured: {server['reason']}"))
    lag = gen["send_lag"]
    rows += [
        ("generator CPU %", f"{gen['cpu_percent']}"),
        ("generator send lag ms p50/p95/p99/max", _ms(lag)),
        ("generator kept real time", "NO: figures include the generator's lag"
         if gen["fell_behind"] else "yes"),
        ("result", "PASS" if report["passed"] else
         f"FAIL: error rate above {errors['max_rate']:.2%}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
