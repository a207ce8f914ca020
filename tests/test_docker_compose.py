"""docker-compose.yml: no Docker engine here, so its structure is checked instead."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def test_compose_has_the_five_services_with_healthchecks():
    services = load()["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "emulator"}
    for name, service in services.items():
        assert "healthcheck" in service, name
        assert service["healthcheck"]["test"], name
        assert "image" in service or "build" in service, name


def test_compose_app_services_build_the_project_and_share_env():
    services = load()["services"]
    for name in ("web", "worker", "emulator"):
        assert services[name]["build"] == ".", name
        assert services[name]["env_file"] == ".env", name
    assert (ROOT / "Dockerfile").exists()


def test_compose_web_waits_for_its_dependencies_and_exposes_8000():
    web = load()["services"]["web"]
    assert set(web["depends_on"]) == {"postgres", "redis", "emulator"}
    assert all(d["condition"] == "service_healthy" for d in web["depends_on"].values())
    assert "8000:8000" in web["ports"]
    assert "daphne" in " ".join(web["command"])
    assert "--websocket-max-message-size" in " ".join(web["command"])


def test_compose_worker_runs_celery_and_emulator_serves_tls_certs():
    services = load()["services"]
    assert services["worker"]["command"][:3] == ["celery", "-A", "voice_platform"]
    emulator = " ".join(services["emulator"]["command"])
    assert "live_emulator" in emulator
    assert "--cert-dir /certs" in emulator
    assert "emulator-certs:/certs:ro" in services["web"]["volumes"]


def test_env_example_points_services_at_each_other():
    env = env_example()
    services = load()["services"]
    db = services["postgres"]["environment"]
    assert env["DATABASE_URL"] == (
        f"postgres://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/{db['POSTGRES_DB']}"
    )
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["LIVE_API_BASE_URL"] == "https://emulator:8765"
    assert env["DJANGO_SETTINGS_MODULE"] == "voice_platform.settings.production"
    assert len(env["SECRET_KEY"]) >= 50


def test_the_image_copies_every_package():
    """A package left out of the image imports from nowhere: the web service would not start."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in found]
    assert packages
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
