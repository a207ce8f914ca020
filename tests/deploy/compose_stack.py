"""docker-compose.yml run as local processes, for machines without a container engine.

Each service's own ``command`` and healthcheck are taken from the compose file and the
environment from ``.env.example``, remapped to this machine: published and listening ports
to free local ones, bind addresses to 127.0.0.1, volume mount points (/certs, /secrets) to
directories of the test, the database to the test's PostgreSQL database. Redis runs the
compose service's own command on a port of its own. HAProxy runs deploy/haproxy.cfg through
tests/balancer.py. Nothing else is invented here: a command the compose file changes is the
command this runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.balancer import start_haproxy
from tests.processes import ROOT, database_url, free_port, stop_processes, wait_listening

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent  # python, daphne, celery of this virtualenv
WEB_PORT = 8000  # the port web processes listen on in the compose network
EMULATOR_PORT = 8765


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines, as compose reads an env_file (no quotes in ours)."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def interpolate(value: str) -> str:
    """Compose's interpolation of our files: ``$$`` is a literal ``$``."""
    if re.search(r"\$(?!\$)\{?\w", value.replace("$$", "")):
        raise AssertionError(f"compose variable in {value!r}: teach the stack test its value")
    return value.replace("$$", "$")


def docker_engine_available() -> bool:
    """Whether ``docker info`` reaches an engine (only then is `docker compose up` tried)."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@dataclass
class LocalStack:
    """The compose services as processes; ``url`` is HAProxy's."""

    workdir: Path
    services: dict[str, Any] = field(default_factory=lambda: compose()["services"])
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    mounts: dict[str, Path] = field(default_factory=dict)
    init_output: str = ""
    url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Seconds each start-up step took (printed when the test fails).
    timings: dict[str, float] = field(default_factory=dict)
    _last: float = 0.0

    # --- remapping ---------------------------------------------------------------------
    def mount_dir(self, mount_point: str) -> Path:
        """The local directory standing for a volume mounted at ``mount_point``."""
        if mount_point not in self.mounts:
            path = self.workdir / "volumes" / mount_point.strip("/").replace("/", "_")
            path.mkdir(parents=True, exist_ok=True)
            self.mounts[mount_point] = path
        return self.mounts[mount_point]

    def local_path(self, value: str) -> str:
        for service in self.services.values():
            for volume in service.get("volumes", []):
                target = volume.split(":")[1]
                if value == target or value.startswith(target + "/"):
                    return str(self.mount_dir(target)) + value[len(target) :]
        return value

    def environment(self, redis_port: int) -> dict[str, str]:
        """The env_file of the app services, pointed at this machine's processes."""
        env = env_file()
        env.pop("COMPOSE_PROFILES", None)  # read by compose, not by the services
        assert env["LIVE_API_BASE_URL"] == f"https://emulator:{EMULATOR_PORT}"
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            # The certificate names "emulator" too (checked by the test); locally the
            # emulator is reached by address.
            LIVE_API_BASE_URL=f"https://127.0.0.1:{self.ports['emulator']}",
        )
        env = {key: self.local_path(value) for key, value in env.items()}
        return {
            # A clean environment: nothing of the test process's own settings leaks in.
            "PATH": f"{BIN}{os.pathsep}/usr/sbin{os.pathsep}/usr/bin{os.pathsep}/bin",
            "HOME": str(self.workdir),
            "LANG": "C.UTF-8",
            "HOSTNAME": socket.gethostname(),  # set in every container; the worker's check reads it
            # The Dockerfile's ENV.
            "PYTHONUNBUFFERED": "1",
            "VAR_DIR": str(self.workdir / "var"),
            **env,
            **self.extra_env,
        }

    def command(self, name: str, *, port: int | None = None) -> list[str]:
        """The service's command, its listening port and bind address made local."""
        args = [self.local_path(interpolate(str(arg))) for arg in self.services[name]["command"]]
        local_values = {"-p": port, "--port": port, "-b": "127.0.0.1", "--host": "127.0.0.1"}
        for flag, local in local_values.items():
            if flag in args and local is not None:
                args[args.index(flag) + 1] = str(local)
        return args

    def healthcheck(self, name: str, *, port: int) -> list[str]:
        """The service's healthcheck test, aimed at its local port."""
        test = [interpolate(str(arg)) for arg in self.services[name]["healthcheck"]["test"]]
        kind, args = test[0], test[1:]
        if kind == "CMD-SHELL":
            args = ["sh", "-c", args[0]]
        return [re.sub(rf"\b{WEB_PORT}\b|\b{EMULATOR_PORT}\b", str(port), a) for a in args]

    # --- processes ---------------------------------------------------------------------
    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
        log = (self.workdir / f"{name}.log").open("w")
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def wait_healthy(self, name: str, env: dict[str, str], *, port: int, timeout: float) -> None:
        """Run the compose healthcheck until it passes, as compose's condition does."""
        check = self.healthcheck(name, port=port)
        deadline = time.monotonic() + timeout
        while True:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log(name)[-3000:]}")
            done = subprocess.run(check, cwd=ROOT, env=env, capture_output=True, check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{name} not healthy: {check}: {done.stderr.decode()[-2000:]}\n"
                    f"{self.log(name)[-3000:] if name in self.procs else ''}"
                )
            time.sleep(0.3)

    def wait_logged(self, name: str, text: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name}: no {text!r} in its log:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)

    def collect_static(self, env: dict[str, str]) -> subprocess.Popen[Any]:
        """The Dockerfile's collectstatic step (the image's STATIC_ROOT), into VAR_DIR."""
        text = DOCKERFILE.read_text().replace("\\\n", " ")
        (step,) = [line[4:] for line in text.splitlines() if "collectstatic" in line]
        assert step.startswith("DJANGO_SETTINGS_MODULE="), step
        # What a build has: the image's ENV, no .env (that is for the containers).
        build = {k: env[k] for k in ("PATH", "HOME", "LANG", "PYTHONUNBUFFERED", "VAR_DIR")}
        return self.spawn("collectstatic", ["sh", "-c", step], build)

    def _lap(self, step: str) -> None:
        now = time.monotonic()
        self.timings[step] = round(now - self._last, 2)
        self._last = now

    def start(self) -> None:
        self._last = time.monotonic()
        services = self.services
        # redis: the compose service's command, on a port of its own.
        redis_port = free_port()
        redis_args = [*services["redis"]["command"], "--port", str(redis_port),
                      "--bind", "127.0.0.1", "--dir", str(self.workdir)]  # fmt: skip
        self.spawn("redis", redis_args, {"PATH": os.environ["PATH"]})
        # emulator: first, like compose (init and the app wait for its certificate).
        self.ports["emulator"] = free_port()
        env = self.environment(redis_port)
        self.spawn("emulator", self.command("emulator", port=self.ports["emulator"]), env)
        static = self.collect_static(env)
        wait_listening(redis_port)
        self.wait_healthy("emulator", env, port=self.ports["emulator"], timeout=30)
        self._lap("emulator")
        # init: the one-shot, run to completion.
        init = subprocess.run(
            self.command("init"), cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        self.init_output = init.stdout
        assert init.returncode == 0, init.stdout + init.stderr
        self._lap("init")
        assert static.wait(60) == 0, self.log("collectstatic")
        self._lap("collectstatic")
        # web1, web2, worker at once; then each one's compose healthcheck.
        for name in ("web1", "web2"):
            self.ports[name] = free_port()
            self.spawn(name, self.command(name, port=self.ports[name]), env)
        self.spawn("worker", self.command("worker"), env)
        for name in ("web1", "web2"):
            self.wait_healthy(name, env, port=self.ports[name], timeout=60)
            self._lap(name)
        # haproxy: deploy/haproxy.cfg with the server lines on the local ports.
        proxy, self.ports["haproxy"] = start_haproxy(
            [self.ports["web1"], self.ports["web2"]], self.workdir
        )
        self.procs["haproxy"] = proxy
        self.url = f"http://127.0.0.1:{self.ports['haproxy']}"
        self.wait_healthy("haproxy", env, port=self.ports["haproxy"], timeout=30)
        self._lap("haproxy")
        # Its check (`celery inspect ping`) starts a whole Django: first the log's "ready".
        self.wait_logged("worker", " ready.", timeout=60)
        self.wait_healthy("worker", env, port=0, timeout=30)
        self._lap("worker")

    def stop(self) -> None:
        stop_processes(list(self.procs.values()))

    def describe(self) -> str:
        return " ".join(f"{n}={shlex.join(p.args)!r}" for n, p in self.procs.items())  # type: ignore[arg-type]
