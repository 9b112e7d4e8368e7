"""A real gunicorn + gevent server started by a test, as deployed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from tests.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to timeout, then SIGKILL; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return int(proc.returncode)


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
        self.metrics_dir: tempfile.TemporaryDirectory[str] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = ""
        self._logfile: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self._logfile = tempfile.NamedTemporaryFile(prefix="sso-gunicorn-")
        self.metrics_dir = tempfile.TemporaryDirectory(prefix="sso-test-metrics-")
        self.env["PROMETHEUS_MULTIPROC_DIR"] = self.metrics_dir.name
        self.proc = subprocess.Popen(
            [gunicorn, "-c", "deploy/gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_healthy(timeout)
        except BaseException as exc:
            self.stop()  # never leak a running gunicorn, whatever went wrong
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}: {self.log}") from None
            raise

    def _wait_healthy(self, timeout: float) -> None:
        proc = self.proc
        assert proc is not None

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("gunicorn exited during start")
            try:
                return requests.get(f"{self.url}/_health", timeout=2).status_code == 200
            except requests.RequestException:  # not up yet, or slow to boot on a busy machine
                return False

        wait_for(healthy, timeout=timeout, what="gunicorn to become healthy", interval=0.1)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop) and wait; returns the exit code."""
        if self.proc is None:
            return 0
        code = terminate(self.proc, timeout)
        if self._logfile is not None:
            self._logfile.seek(0)
            self.log = self._logfile.read().decode(errors="replace")
            self._logfile.close()
            self._logfile = None
        self.proc = None
        if self.metrics_dir is not None:
            self.metrics_dir.cleanup()
            self.metrics_dir = None
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


class LiveFlow:
    """The OAuth flow over real HTTP against a GunicornServer."""

    def __init__(self, url: str, service_secret: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Service {service_secret}"}

    def login(self, user_id: str = "42") -> str:
        """A new session; its token is what a browser's SSO cookie would hold."""
        response = requests.post(
            f"{self.url}/session/create",
            headers=self.headers,
            timeout=5,
            json={"user_id": user_id, "claims": {"name": "Ada", "email": "ada@example.com"}},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def code(self, cookie: str, **params: str) -> str:
        from urllib.parse import parse_qs, urlsplit

        from sso.cookies import COOKIE_NAME
        from tests.conftest import CHALLENGE, REDIRECT_URI

        query = {"response_type": "code", "client_id": "fluxer", "redirect_uri": REDIRECT_URI, "state": "st",
                 "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "openid profile email",
                 **params}  # fmt: skip
        response = requests.get(
            f"{self.url}/authorize", params=query, cookies={COOKIE_NAME: cookie}, allow_redirects=False, timeout=5
        )
        assert response.status_code == 302, response.text
        return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]

    def exchange(self, code: str) -> requests.Response:
        from tests.conftest import REDIRECT_URI, VERIFIER

        return requests.post(f"{self.url}/token", timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, "client_id": "fluxer"})  # fmt: skip

    def refresh(self, refresh_token: str) -> requests.Response:
        return requests.post(f"{self.url}/token", timeout=10, data={
            "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "fluxer"})  # fmt: skip
