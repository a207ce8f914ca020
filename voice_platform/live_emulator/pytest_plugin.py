"""Pytest fixtures for the Live emulator.

Register with `pytest_plugins = ["voice_platform.live_emulator.pytest_plugin"]` in the
root conftest, or import the fixtures into a conftest. Fixtures:

- `live_emulator_cert_dir` (session): a temporary cert directory, made once.
- `live_emulator_settings`: `EmulatorConfig` overrides; override this fixture to change them.
  The default is 20x real-time pace. `{"profile": "realistic", "time_scale": 60, ...}`
  starts the realistic profile (docs/emulator.md).
- `live_emulator` (async): a started `RunningEmulator` in the test's event loop.
- `live_client`: a `genai.Client` pointed at it (v1beta, test key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google import genai

from voice_platform.live_emulator.certs import ensure_cert
from voice_platform.live_emulator.testing import RunningEmulator, running_emulator

TEST_PACE = 20.0


@pytest.fixture(scope="session")
def live_emulator_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cert_dir = tmp_path_factory.mktemp("emulator-certs")
    ensure_cert(cert_dir)
    return cert_dir


@pytest.fixture
def live_emulator_settings() -> dict[str, Any]:
    return {"pace": TEST_PACE}


@pytest_asyncio.fixture
async def live_emulator(
    live_emulator_cert_dir: Path, live_emulator_settings: dict[str, Any]
) -> AsyncIterator[RunningEmulator]:
    settings = {"cert_dir": live_emulator_cert_dir, **live_emulator_settings}
    async with running_emulator(**settings) as emulator:
        yield emulator


@pytest.fixture
def live_client(live_emulator: RunningEmulator) -> genai.Client:
    return live_emulator.make_client()
