"""The container image (deploy/Dockerfile) and compose file, checked without a container engine.

tests/test_container_image.py builds and runs the image with podman where it
is installed; these checks hold everywhere: the build context and COPY sources, the compose
wiring (and, where the compose plugin exists, `docker compose config`), and
the runtime stage's own files, ENV, CMD and HEALTHCHECK, assembled in a temp
directory and run against the real Redis: a missing COPY or a wrong command
fails there.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from config.keygen import env_lines
from tests.deploy_files import DEPLOY, gunicorn_graceful_timeout, substitute
from tests.redis_server import free_port
from tests.server import ROOT, server_env
from tests.waiting import WaitTimeout, wait_for

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile as (KEYWORD, arguments) pairs: continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions after the last FROM: what the shipped image is made of."""
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from + 1 :]


def context_copies(steps: list[tuple[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY that reads the build context (not ``--from`` a stage)."""
    copies = []
    for keyword, arguments in steps:
        words = shlex.split(arguments)
        if keyword != "COPY" or any(word.startswith("--from=") for word in words):
            continue
        *sources, destination = [word for word in words if not word.startswith("--")]
        copies.append((sources, destination))
    return copies


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (or a parent) out; matches at least as much as Docker does."""
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatchcase(candidate, pattern)
        or (pattern.startswith("**/") and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], pattern[3:]))
        for candidate in candidates
        for pattern in patterns
    )


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command."""
    (arguments,) = [arguments for keyword, arguments in runtime_stage() if keyword == "HEALTHCHECK"]
    return list(json.loads(arguments.split(" CMD ", 1)[1]))


def test_every_copy_source_exists_and_is_in_the_build_context():
    """Every COPY source of the Dockerfile exists in the repository and .dockerignore keeps it in the context."""
    sources = [source for sources, _ in context_copies(instructions()) for source in sources]
    assert "requirements.txt" in sources and "wsgi.py" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"


def test_build_context_leaves_out_secrets_and_development_files():
    """.dockerignore keeps .env files, the venv, the tests and .git out of the build context."""
    for path in (".env", "deploy/sso.env", ".venv", "tests/conftest.py", ".git", "sso/__pycache__"):
        assert dockerignored(path), path


def test_image_runs_as_an_unprivileged_user():
    """The runtime stage switches to a numeric non-root user before its command."""
    users = [arguments for keyword, arguments in runtime_stage() if keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


def copy_runtime_files(app_dir: Path) -> None:
    """Lay out the runtime stage's COPY instructions from the build context under ``app_dir`` (its WORKDIR)."""
    assert ("WORKDIR", "/app") in runtime_stage()
    for sources, destination in context_copies(runtime_stage()):
        for source in sources:
            source_path = ROOT / source
            target = app_dir / destination
            if source_path.is_dir():
                shutil.copytree(source_path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
                continue
            target = target / source_path.name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source_path, target)


def runtime_environment(port: int) -> dict[str, str]:
    """The runtime stage's ENV, with this checkout's venv for /opt/venv and a loopback port for 8090."""
    env: dict[str, str] = {}
    for keyword, arguments in runtime_stage():
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(arguments))
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = substitute(DOCKERFILE, {"/opt/venv/bin": venv_bin, "$PATH": "/usr/bin:/bin"}, env["PATH"])
    env["SSO_BIND"] = substitute(DOCKERFILE, {"0.0.0.0:8090": f"127.0.0.1:{port}"}, env["SSO_BIND"])
    return env


def test_runtime_stage_serves_and_passes_its_own_health_check(settings, redis, tmp_path):
    """The image's files, ENV and CMD, run without an engine, pass its HEALTHCHECK, which fails once they stop."""
    app_dir = tmp_path / "app"
    copy_runtime_files(app_dir)
    port = free_port()
    env = {**server_env(settings), **runtime_environment(port), "SSO_WORKERS": "1"}
    (command,) = [json.loads(arguments) for keyword, arguments in runtime_stage() if keyword == "CMD"]
    health = [
        substitute(DOCKERFILE, {"127.0.0.1:8090": f"127.0.0.1:{port}"}, word) if "8090" in word else word
        for word in healthcheck_command()
    ]

    def healthy() -> bool:
        return subprocess.run(health, env=env, capture_output=True, timeout=10).returncode == 0

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        started = False
        try:
            outcome = wait_for(lambda: "exited" if proc.poll() is not None else healthy() and "healthy",
                               timeout=30, what="the image's CMD to pass its health check", interval=0.2)  # fmt: skip
            started = outcome == "healthy"
        except WaitTimeout:
            pass
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            log.seek(0)
            output = log.read().decode(errors="replace")
    assert started, f"the image's CMD did not become healthy:\n{output}"
    assert code == 0, output
    assert not healthy()


def compose_services() -> dict:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_compose_builds_the_image_and_waits_for_a_healthy_valkey():
    """The sso service builds deploy/Dockerfile from the repository root and starts after Valkey answers ping."""
    services = compose_services()
    sso, valkey = services["sso"], services["valkey"]
    assert (COMPOSE.parent / sso["build"]["context"]).resolve() == ROOT
    assert ROOT / sso["build"]["dockerfile"] == DOCKERFILE
    assert sso["depends_on"] == {"valkey": {"condition": "service_healthy"}}
    assert sso["environment"]["REDIS_URL"] == "redis://valkey:6379/0"
    assert valkey["healthcheck"]["test"] == ["CMD", "valkey-cli", "ping"]
    assert sso["healthcheck"]["test"] == ["CMD", *healthcheck_command()]


def test_compose_publishes_on_loopback_only_and_keeps_its_env_file_out_of_git():
    """Published ports bind 127.0.0.1, and the env file with the keys is ignored by git."""
    services = compose_services()
    ports = [str(port) for service in services.values() for port in service.get("ports", [])]
    assert ports and all(port.startswith("127.0.0.1:") for port in ports)
    env_file = COMPOSE.parent / services["sso"]["env_file"]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(env_file)], cwd=ROOT, timeout=30)
    assert ignored.returncode == 0, f"{env_file} would be committable"


def test_compose_stop_grace_period_outlasts_the_graceful_timeout():
    """`docker compose stop` waits longer than gunicorn's graceful stop, so worker_exit can flush."""
    grace = re.fullmatch(r"(\d+)s", compose_services()["sso"]["stop_grace_period"])
    assert grace is not None
    assert int(grace.group(1)) >= gunicorn_graceful_timeout() + 10


def test_compose_file_parses_with_docker_compose(tmp_path):
    """`docker compose config` accepts deploy/compose.yaml with an env file made by `make keys`."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client installed")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("`docker compose` is not available: the docker client here has no compose plugin")
    (tmp_path / "deploy").mkdir()
    shutil.copy(COMPOSE, tmp_path / "deploy" / "compose.yaml")
    keys = env_lines()
    (tmp_path / "deploy" / "sso.env").write_text(keys)
    result = subprocess.run(
        [docker, "compose", "-f", "deploy/compose.yaml", "config", "--format", "json"],
        cwd=tmp_path,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "fluxer-sso-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    environment = json.loads(result.stdout)["services"]["sso"]["environment"]
    secret = re.search(r"^SSO_SERVICE_SECRET=(.+)$", keys, re.MULTILINE)
    assert secret is not None and environment["SSO_SERVICE_SECRET"] == secret.group(1)
    assert environment["REDIS_URL"] == "redis://valkey:6379/0"
