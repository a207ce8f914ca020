"""Running the emulator outside the test's loop: a thread, and the management command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from voice_platform.live_emulator.testing import EmulatorThread

from .helpers import send_text, text_of, turn

REPO = Path(__file__).resolve().parents[3]


async def test_runner_thread_serves_another_loop(live_emulator_cert_dir):
    with EmulatorThread(cert_dir=live_emulator_cert_dir, pace=0) as emu:
        client = emu.make_client()
        config = {"response_modalities": ["TEXT"]}
        async with client.aio.live.connect(model=emu.model, config=config) as s:
            await send_text(s, "from another loop")
            assert text_of(await turn(s)) == "You said: from another loop"


def test_runner_management_command_starts_and_stops(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "voice_platform.settings.test"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "live_emulator",
            "--port",
            "0",
            "--cert-dir",
            str(tmp_path),
            "--pace",
            "0",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Live emulator listening on https://127.0.0.1:")
        cert_line = proc.stdout.readline()
        assert cert_line.strip() == f"Certificate: {tmp_path / 'cert.pem'}"
        assert (tmp_path / "key.pem").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
