"""Helpers of bench/phone_bench.py, each run as its own process by the orchestrator.

    python -m bench.phone_setup accounts --tokens 151    (platform env: prints JSON)
    python -m bench.phone_setup emulator --cert-dir DIR  (prints URL, CERT; then commands)

``accounts``: the tenant ``bench-phone`` (concurrency limit 100 000), its AUDIO agent, a
Twilio carrier account with a known auth token and a phone number ringing the agent; ends
sessions and calls a previous run left live; prints the account's public id, SID, auth
token and number, plus ``--tokens`` single-use client tokens for the browser path.

``emulator``: the Live emulator at pace 1.0 (replies echo the caller's turn at real time),
steered over stdin: ``STATS`` prints ``STATS <json>`` with, per open session, the seconds
of input audio it has heard (the uplink check) and how late its reply chunks left
(``pace``: the emulator's own share of core 1); ``STOP`` or end of input stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench.bridge_setup import bench_tenant_agent

TENANT_SLUG = "bench-phone"
AGENT_SLUG = "bench-phone-echo"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "benchphone" + "0" * 22  # a bench-only carrier account
NUMBER = "+15005550006"


def accounts(token_count: int) -> dict[str, Any]:
    tenant, agent = bench_tenant_agent(
        tenant_slug=TENANT_SLUG, tenant_name="Phone bench",
        agent_slug=AGENT_SLUG, agent_name="Phone bench echo",
    )  # fmt: skip
    from sessions.tokens import client_token_issue
    from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
    from telephony.services import carrier_account_create, phone_number_create
    from voice_platform.tenancy.scope import tenant_scope

    with tenant_scope(tenant.pk):
        account = CarrierAccount.objects.filter(account_sid=ACCOUNT_SID).first()
        if account is None:
            account = carrier_account_create(
                tenant=tenant, name="Bench carrier", account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
            )
        if not PhoneNumber.objects.filter(number=NUMBER).exists():
            phone_number_create(
                tenant=tenant,
                number=NUMBER,
                agent_id=agent.pk,
                carrier_account_id=account.pk,
                greeting="",  # the caller speaks first: every reply answers a turn
            )
        # Leftovers of an interrupted run: keep the tables honest.
        PhoneCall.objects.exclude(status__in=["ended", "refused"]).update(status="ended")
        tokens = [
            client_token_issue(
                tenant=tenant,
                agent=agent,
                end_user_id=f"bench-browser-{index}",
                new_session_expire_seconds=600,
            ).raw
            for index in range(token_count)
        ]
    return {
        "account": str(account.public_id),
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "number": NUMBER,
        "tokens": tokens,
    }


def emulator_stats(emulator: Any) -> dict[str, Any]:
    stats = emulator.pace_stats
    return {
        "sessions": {
            str(r.index): {"audio_s": r.audio_seconds, "discarded_s": r.audio_discarded_seconds}
            for r in emulator.recorder.sessions
            if not r.closed.is_set()
        },
        "pace_p50_ms": stats.percentile(50),
        "pace_p99_ms": stats.percentile(99),
        "pace_max_ms": stats.max_ms,
    }


async def serve_emulator(cert_dir: Path) -> None:
    from voice_platform.live_emulator.testing import running_emulator

    async with running_emulator(
        port=0,
        cert_dir=cert_dir,
        pace=1.0,
        record=False,  # minutes of frames would only fill memory; the counters stay
        connection_lifetime=3600,
    ) as emu:
        print(f"URL {emu.base_url}", flush=True)
        print(f"CERT {emu.cert_path}", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line == "STATS":
                print("STATS " + json.dumps(emulator_stats(emu.emulator)), flush=True)
            elif line == "FORGET":  # drop the records of closed sessions (between cells)
                recorder = emu.emulator.recorder
                recorder.sessions = [r for r in recorder.sessions if not r.closed.is_set()]
            elif line in ("STOP", ""):
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accounts")
    acc.add_argument("--tokens", type=int, default=1)
    acc.add_argument("--create-database", action="store_true")
    emu = sub.add_parser("emulator")
    emu.add_argument("--cert-dir", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "emulator":
        asyncio.run(serve_emulator(args.cert_dir))
    elif args.create_database:
        from bench.bridge_setup import ensure_database

        ensure_database(os.environ["DATABASE_URL"])
    else:
        print(json.dumps(accounts(args.tokens)))


if __name__ == "__main__":
    main()
