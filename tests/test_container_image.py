"""The container image, built from deploy/Dockerfile by podman and run against the suite's Redis.

The image runs with compose's hardening (read-only root, a /tmp tmpfs, every
capability dropped, no-new-privileges) on the host's network, listening on a
free loopback port; the whole OAuth flow goes through it, its own HEALTHCHECK
passes inside it, and a SIGTERM stops it cleanly. Skipped where podman, runc or
debootstrap are missing (`.ci/run` installs them); the first run on a machine
debootstraps the base (tests/container_engine.py), later runs reuse it.
"""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
import requests
from dotenv import dotenv_values

from config.keygen import env_lines
from tests.container_engine import Podman, missing_tools
from tests.deploy_files import substitute
from tests.redis_server import free_port
from tests.server import ROOT, LiveFlow
from tests.test_container import DOCKERFILE, healthcheck_command
from tests.waiting import wait_for

IMAGE = "localhost/fluxer-sso:test"

pytestmark = pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))


def _pins(text: str) -> set[str]:
    """``name==version`` lines, names normalised as pip freeze prints them (PEP 503), extras dropped."""
    found = set()
    for line in text.splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            found.add(f"{re.sub(r'[-_.]+', '-', name.split('[')[0]).lower()}=={version}")
    return found


@pytest.fixture(scope="module")
def podman() -> Podman:
    engine = Podman()
    engine.ensure_base_image()
    # docker format: the OCI format has no HEALTHCHECK and podman would drop it.
    engine.run("build", "--pull=never", "--network=host", "--format", "docker", *engine.ulimits,
               "-f", str(DOCKERFILE), "-t", IMAGE, str(ROOT), timeout=600)  # fmt: skip
    engine.run("image", "prune", "-f", check=False)  # the previous build's untagged layers
    return engine


@pytest.fixture
def container(podman: Podman, redis_url: str, prefix: str, redis):  # noqa: ARG001 - redis deletes our keys
    """The image running with `make keys` output as its env file, as compose runs it."""
    port = free_port()
    keys = env_lines()
    name = f"fluxer-sso-test-{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": redis_url, "SSO_REDIS_PREFIX": prefix, "SSO_BIND": f"127.0.0.1:{port}", "SSO_WORKERS": "2",
        "SSO_ISSUER": f"http://127.0.0.1:{port}", "SSO_APP_ORIGINS": "http://app.test", "SSO_COOKIE_SECURE": "false",
    }  # fmt: skip
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    secrets = {k: v for k, v in dotenv_values(stream=io.StringIO(keys)).items() if v}
    secret_args = [arg for key, value in secrets.items() for arg in ("-e", f"{key}={value}")]
    podman.run("run", "-d", "--name", name, "--network=host", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
               "--security-opt", "no-new-privileges", *podman.ulimits, *secret_args, *env_args, IMAGE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        state = podman.run("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
        if state != "true":
            raise RuntimeError("the container exited:\n" + podman.run("logs", name, check=False).stderr)
        try:
            return requests.get(f"{url}/_health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, timeout=60, what="the container to answer /_health", interval=0.2)
        yield {"name": name, "url": url, "port": port, "secret": secrets["SSO_SERVICE_SECRET"], "env": env}
    finally:
        podman.run("rm", "-f", "-t", "0", name, check=False)


def test_the_image_builds_with_its_health_check_and_unprivileged_user(podman):
    """The built image keeps the Dockerfile's HEALTHCHECK, user, command and the pinned requirements."""
    (image,) = json.loads(podman.run("image", "inspect", IMAGE).stdout)
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["gunicorn", "-c", "deploy/gunicorn.conf.py", "wsgi:app"]
    assert image["Healthcheck"]["Test"] == ["CMD", *healthcheck_command()]
    frozen = podman.run("run", "--rm", "--network=none", *podman.ulimits, IMAGE, "pip", "freeze").stdout
    assert _pins((ROOT / "requirements.txt").read_text()) <= _pins(frozen), "the image lacks a pinned version"
    probe = "import importlib.util as u; print(u.find_spec('pytest'), u.find_spec('ruff'))"
    tools = podman.run("run", "--rm", "--network=none", *podman.ulimits, IMAGE, "python", "-c", probe).stdout
    assert tools.split() == ["None", "None"], "test tools leaked into the image"


def test_a_full_flow_through_the_running_container(container, podman):
    """Session, authorize with its cookie, token, userinfo and refresh through the container; its HEALTHCHECK passes."""
    flow = LiveFlow(container["url"], container["secret"])
    token = flow.login("42")
    tokens = flow.exchange(flow.code(token))
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    info = requests.get(f"{container['url']}/userinfo", timeout=5,
                        headers={"Authorization": f"Bearer {body['access_token']}"})  # fmt: skip
    assert info.status_code == 200 and info.json()["sub"] == "42"
    assert flow.refresh(body["refresh_token"]).status_code == 200
    assert podman.run("exec", container["name"], "id", "-u").stdout.strip() == "10001"
    health = [
        substitute(DOCKERFILE, {"127.0.0.1:8090": f"127.0.0.1:{container['port']}"}, word) if "8090" in word else word
        for word in healthcheck_command()
    ]
    assert podman.run("exec", container["name"], *health, check=False).returncode == 0
    logged = podman.run("logs", container["name"])
    logs = (logged.stdout + logged.stderr).splitlines()
    starts = [json.loads(line) for line in logs if '"sso.start"' in line and "worker started" in line]
    assert len(starts) == 2 and starts[0]["issuer"] == container["url"]
    assert container["secret"] not in "\n".join(logs)


def test_the_container_stops_cleanly_on_sigterm(container, podman):
    """`podman stop` (SIGTERM) ends gunicorn gracefully: exit code 0, well inside compose's grace period."""
    podman.run("stop", "-t", "40", container["name"], timeout=60)
    state = json.loads(podman.run("inspect", container["name"]).stdout)[0]["State"]
    assert state["ExitCode"] == 0, podman.run("logs", container["name"]).stderr
