"""A real gunicorn + gevent server started by a test, as deployed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class GunicornServer:
    """``gunicorn -c deploy/gunicorn.conf.py wsgi:app`` with the given environment."""

    def __init__(self, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SSO_")},
            **env,
            "SSO_PORT": str(self.port),
            "SSO_WORKERS": str(workers),
            "SSO_ENV_FILE": "/nonexistent/.env",
            "SSO_GRACEFUL_TIMEOUT": "10",
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ""
        self._logfile: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self._logfile = tempfile.NamedTemporaryFile(prefix="sso-gunicorn-")
        self.proc = subprocess.Popen(
            [gunicorn, "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"gunicorn exited: {self.log}")
            try:
                if requests.get(f"{self.url}/_health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not become healthy: {self.log}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop) and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._logfile is not None:
            self._logfile.seek(0)
            self.log = self._logfile.read().decode(errors="replace")
            self._logfile.close()
            self._logfile = None
        code = self.proc.returncode
        self.proc = None
        return code


def server_env(settings, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment variables that reproduce a Settings object for a subprocess."""
    env = {
        "SSO_JWT_PRIVATE_KEY": settings.jwt_private_key,
        "SSO_JWT_PUBLIC_KEY": settings.jwt_public_key,
        "SSO_SERVICE_SECRET": ",".join(settings.service_secrets),
        "REDIS_URL": settings.redis_url,
        "SSO_REDIS_PREFIX": settings.redis_prefix,
        "SSO_ISSUER": settings.issuer,
        "SSO_APP_ORIGINS": ",".join(settings.app_origins),
        "SSO_ALLOWED_REDIRECT_URIS": ",".join(settings.allowed_redirect_uris),
        "SSO_CLIENTS": ",".join(settings.clients),
        "SSO_LOGIN_URL": settings.login_url,
        "SSO_ACTIVITY_UPDATE_INTERVAL": str(settings.activity_update_interval),
        "SSO_REFRESH_REUSE_GRACE": str(settings.refresh_reuse_grace),
        "SSO_COOKIE_SECURE": "true" if settings.cookie_secure else "false",
    }
    env.update(extra)
    return env
