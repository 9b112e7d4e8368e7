"""The systemd unit (deploy/systemd/fluxer-sso.service), checked with systemd's own tools.

No systemd runs as PID 1 on the test machines, so the unit is never started
here: ``systemd-analyze verify`` and ``security --offline`` judge the file, the
environment-file format is checked with systemd's own parser, and the one
hardening switch that could break gevent (MemoryDenyWriteExecute) is
reproduced with the kernel rule systemd applies, around a real gunicorn.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from config.settings import load_settings
from tests.conftest import SERVICE_SECRET
from tests.deploy_files import DEPLOY, gunicorn_graceful_timeout, substitute
from tests.server import ROOT, GunicornServer, server_env

UNIT = DEPLOY / "systemd" / "fluxer-sso.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
ENV_GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="no systemd-analyze binary (Debian package: systemd)"
)

# What `systemd-analyze security` may still find open, and why the service needs it.
ACCEPTED_EXPOSURES = {
    "PrivateNetwork=": "it serves HTTP and talks to Redis",
    "RestrictAddressFamilies=~AF_(INET|INET6)": "it serves HTTP and talks to Redis",
    "RestrictAddressFamilies=~AF_UNIX": "Redis may be at unix://; sd_notify is a Unix socket",
    "IPAddressDeny=": "who may connect is decided by nginx's allow list and the firewall, not the unit",
    "SystemCallFilter=~@resources": "part of @system-service (getrlimit is prlimit64)",
    "SystemCallFilter=~@privileged": "part of @system-service (gunicorn may chown its worker files)",
    "RootDirectory=/RootImage=": "it runs from its checkout in /opt/fluxer-sso",
    "PrivateUsers=": "user namespaces cannot be tried without systemd here; left out rather than guessed",
    "ProcSubset=": "hiding /proc's system files cannot be tried without systemd here; left out rather than guessed",
    "DeviceAllow=": "the pseudo devices PrivateDevices= leaves (/dev/null, /dev/urandom, ...)",
}


def render_unit(directory: Path) -> Path:
    """A copy whose ExecStart is this checkout's gunicorn: /opt/fluxer-sso does not exist here."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    unit = directory / UNIT.name
    unit.write_text(substitute(UNIT, {"/opt/fluxer-sso/.venv/bin/gunicorn": str(gunicorn)}))
    return unit


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """`systemd-analyze verify` loads the unit without a single complaint, and does report a broken copy."""
    unit = render_unit(tmp_path)
    result = analyze("verify", str(unit), cwd=tmp_path)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    broken = broken_dir / UNIT.name
    broken.write_text(unit.read_text().replace("[Service]\n", "[Service]\nProtectSystemm=strict\n"))
    result = analyze("verify", str(broken), cwd=broken_dir)
    assert "Unknown key 'ProtectSystemm'" in result.stdout + result.stderr


@needs_systemd_analyze
def test_unit_hardening_leaves_only_the_accepted_exposures(tmp_path):
    """`systemd-analyze security` finds nothing open beyond the exposures the service needs."""
    if "--offline" not in analyze("security", "--help", cwd=tmp_path).stdout:
        pytest.skip("this systemd-analyze has no `security --offline` (systemd < 250)")
    unit = render_unit(tmp_path)
    result = analyze("security", "--offline=yes", "--json=short", str(unit), cwd=tmp_path)
    checks = json.loads(result.stdout)
    still_open = {check["name"] for check in checks if not check["set"] and check["exposure"] not in (None, "0.0")}
    assert still_open - ACCEPTED_EXPOSURES.keys() == set()
    assert len(checks) > 50  # the review really ran


def test_stop_timeout_outlasts_the_graceful_timeout():
    """systemd waits longer than gunicorn's graceful stop, so worker_exit can flush before any SIGKILL."""
    stop_timeout = re.search(r"^TimeoutStopSec=(\d+)s$", UNIT.read_text(), re.MULTILINE)
    assert stop_timeout is not None
    # The unit sets SSO_ENV_FILE=/dev/null, as gunicorn_graceful_timeout() reads the config.
    assert int(stop_timeout.group(1)) >= gunicorn_graceful_timeout() + 10


@pytest.mark.skipif(not ENV_GENERATOR.exists(), reason="systemd's environment.d generator is not installed")
def test_make_keys_output_is_a_valid_systemd_environment_file(tmp_path):
    """The `make keys` lines, read by systemd's environment-file parser, are a configuration the service accepts."""
    keys = subprocess.run(
        [sys.executable, "-m", "config.keygen"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # environment.d files and EnvironmentFile= share systemd's parser (env-file.c);
    # the generator prints what it parsed, shell-quoted.
    (tmp_path / "environment.d").mkdir()
    (tmp_path / "environment.d" / "50-sso.conf").write_text(keys)
    parsed = subprocess.run(
        [str(ENV_GENERATOR)],
        env={"XDG_CONFIG_HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "none")},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    env = dict(shlex.split(line)[0].split("=", 1) for line in parsed.splitlines() if line.startswith("SSO_"))
    assert set(env) == {"SSO_JWT_PRIVATE_KEY", "SSO_JWT_PUBLIC_KEY", "SSO_SERVICE_SECRET"}
    settings = load_settings(env)
    assert settings.service_secrets == (re.search(r"^SSO_SERVICE_SECRET=(.+)$", keys, re.MULTILINE).group(1),)


MDWE_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(3)
mmap = libc.mmap
mmap.restype, mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                                                ctypes.c_int, ctypes.c_long]
pid = os.fork()
if pid == 0:  # a forked child (a gunicorn worker) must inherit the rule
    os._exit(0 if mmap(None, 4096, 7, 0x22, -1, 0) == ctypes.c_void_p(-1).value else 1)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""

MDWE_SITECUSTOMIZE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(65, 1, 0, 0, 0)  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: what MemoryDenyWriteExecute=yes applies
with open(os.environ["MDWE_MARKER"], "w") as marker:
    marker.write(str(libc.prctl(66, 0, 0, 0, 0)))  # PR_GET_MDWE
"""


def test_gevent_workers_serve_under_memory_deny_write_execute(settings, redis, prefix, tmp_path):
    """Under the kernel's no-W+X rule (MemoryDenyWriteExecute=yes) gunicorn's gevent workers serve and stop cleanly."""
    probe = subprocess.run([sys.executable, "-c", MDWE_PROBE], timeout=30)
    if probe.returncode == 3:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3), which systemd uses when it can")
    assert probe.returncode == 0, "the rule did not refuse a writable+executable mapping in a forked child"

    (tmp_path / "sitecustomize.py").write_text(MDWE_SITECUSTOMIZE)
    marker = tmp_path / "mdwe"
    server = GunicornServer(server_env(settings, PYTHONPATH=str(tmp_path), MDWE_MARKER=str(marker)), workers=1)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{prefix}events")
    pubsub.get_message(timeout=1)
    server.start()
    try:
        headers = {"Authorization": f"Service {SERVICE_SECRET}"}
        created = requests.post(f"{server.url}/session/create", json={"user_id": "42"}, headers=headers, timeout=10)
        assert created.status_code == 201
        listed = requests.get(f"{server.url}/session/list/42", headers=headers, timeout=10)
        assert [s["session_id_hash"] for s in listed.json()["sessions"]] == [created.json()["session_id_hash"]]
        event = pubsub.get_message(timeout=5)  # published by the worker's background greenlet
        assert event is not None and "session-created" in event["data"]
    finally:
        pubsub.close()
        assert server.stop() == 0
    assert marker.read_text() == "1"
