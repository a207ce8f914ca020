"""docker-compose.yml's structure. tests/deploy/test_stack.py runs it (as processes when
there is no container engine); these checks say what it must hold, and fail fast."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

from tests.deploy.compose_stack import compose, env_file

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("init", "web1", "web2", "worker")


def services() -> dict:
    return compose()["services"]


def test_compose_has_the_stack_with_healthchecks():
    found = services()
    assert set(found) == {
        "postgres", "redis", "emulator", "init", "web1", "web2", "worker", "haproxy",
    }  # fmt: skip
    for name, service in found.items():
        assert "image" in service or "build" in service, name
        if name == "init":  # a one-shot: it exits, and the others wait for its success
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"], name


def test_app_services_build_the_project_and_share_env():
    found = services()
    for name in (*APP_SERVICES, "emulator"):
        assert found[name]["build"] == ".", name
        assert found[name]["image"] == "voice-platform:local", name
    for name in APP_SERVICES:
        assert found[name]["env_file"] == ".env", name
    assert (ROOT / "Dockerfile").exists()


def test_web_processes_run_daphne_like_make_run():
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    flags = re.findall(r"--websocket-max-\S+ \d+", run_sh.replace("\\\n", " "))
    assert len(flags) == 2
    for name in ("web1", "web2"):
        command = shlex.join(services()[name]["command"])
        assert command.startswith("daphne -b 0.0.0.0 -p 8000 ")
        assert all(flag in command for flag in flags), (command, flags)
        assert command.endswith("voice_platform.asgi:application")
        assert "ports" not in services()[name]  # reached through the balancer only
        assert "/readyz" in " ".join(services()[name]["healthcheck"]["test"])


def test_startup_order_waits_for_init_and_healthy_dependencies():
    found = services()
    for name in ("web1", "web2", "worker"):
        needs = found[name]["depends_on"]
        assert needs["init"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == needs["redis"]["condition"] == "service_healthy"
        # The emulator is waited for when its profile is on, and optional otherwise.
        assert needs["emulator"] == {"condition": "service_healthy", "required": False}
    init = found["init"]["depends_on"]
    assert init["postgres"]["condition"] == "service_healthy"
    assert init["emulator"]["required"] is False


def test_haproxy_balances_the_web_processes_on_8000():
    haproxy = services()["haproxy"]
    assert "./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]
    assert haproxy["ports"] == ["8000:8000"]
    assert set(haproxy["depends_on"]) == {"web1", "web2"}
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert re.findall(r"^\s+server (\S+) (\S+) check$", config, re.M) == [
        ("web1", "web1:8000"),
        ("web2", "web2:8000"),
    ]
    assert "bind *:8000" in config
    assert "uri /readyz" in config
    assert "timeout tunnel" in config  # WebSocket calls outlive the HTTP timeouts


def test_emulator_profile_and_certificate_name_match_the_url_dialled():
    found, env = services(), env_file()
    emulator = found["emulator"]
    assert emulator["profiles"] == ["emulator"]
    assert env["COMPOSE_PROFILES"] == "emulator"
    command = emulator["command"]
    assert command[:3] == ["python", "-m", "voice_platform.live_emulator"]
    url = urlsplit(env["LIVE_API_BASE_URL"])
    assert command[command.index("--cert-name") + 1] == url.hostname == "emulator"
    assert command[command.index("--port") + 1] == str(url.port)
    cert_dir = command[command.index("--cert-dir") + 1]
    assert env["LIVE_API_CA_FILE"] == f"{cert_dir}/cert.pem"
    assert f"emulator-certs:{cert_dir}" in emulator["volumes"]
    for name in APP_SERVICES:
        assert f"emulator-certs:{cert_dir}:ro" in found[name]["volumes"], name


def test_env_example_points_services_at_each_other():
    env = env_file()
    db = services()["postgres"]["environment"]
    assert env["DATABASE_URL"] == (
        f"postgres://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@postgres:5432/{db['POSTGRES_DB']}"
    )
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["DJANGO_SETTINGS_MODULE"] == "voice_platform.settings.production"
    assert env["SECURE_SSL_REDIRECT"] == "0"  # plain HTTP behind HAProxy (TLS in front)


def test_no_usable_secret_in_the_example_the_key_is_generated_once():
    env = env_file()
    assert "SECRET_KEY" not in env  # a copied placeholder would sign every session
    key_file = env["SECRET_KEY_FILE"]
    found = services()
    directory = str(Path(key_file).parent)
    assert f"secrets:{directory}" in found["init"]["volumes"]  # init writes it
    for name in ("web1", "web2", "worker"):
        assert f"secrets:{directory}:ro" in found[name]["volumes"], name
    assert found["init"]["command"] == ["sh", "deploy/init.sh"]
    script = (ROOT / "deploy" / "init.sh").read_text()
    assert "SECRET_KEY_FILE" in script
    assert "manage.py migrate" in script
    assert "manage.py bootstrap" in script


def test_the_image_copies_every_package_and_collects_static_files():
    """A package left out of the image imports from nowhere: the web service would not start."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in found]
    assert packages
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert "COPY deploy ./deploy" in dockerfile  # init.sh
    assert "manage.py collectstatic --noinput" in dockerfile
    assert "\nUSER app\n" in dockerfile
