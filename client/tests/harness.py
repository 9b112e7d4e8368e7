"""The client's own test harness: a private redis-server and the real service under gunicorn.

Nothing here imports the server's code: the service runs as a subprocess from the
repository root (``gunicorn -c deploy/gunicorn.conf.py wsgi:app``, gevent workers),
and is spoken to over HTTP like any API instance would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[2]
SERVICE_SECRET = "client-tests-service-secret-0123456789"
ISSUER = "http://sso.client.test"
REDIRECT_URI = "http://app.client.test/oauth/callback"
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
COOKIE = "__flx_sso_session"

# The repository's own test helpers: one throwaway server (the same binary choice, the shipped
# valkey-server on a machine without redis-server) and one polling helper for both suites.
sys.path.insert(0, str(ROOT))
from tests.redis_server import RedisServer as RedisProcess  # noqa: E402, F401 (the client tests use it)
from tests.redis_server import free_port  # noqa: E402
from tests.waiting import wait_for  # noqa: E402


def rsa_pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


class GunicornProcess:
    """One gunicorn, started from ``cwd`` with ``args``; up once ``probe`` answers ``expect``."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], probe: str, expect: int = 200) -> None:
        self.args, self.cwd, self.env, self.probe, self.expect = args, cwd, env, probe, expect
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="sso-client-gunicorn-")
        self._final_log = ""

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.proc = subprocess.Popen(
            [gunicorn, *self.args], cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited during start: {self.log()}")
            try:
                return requests.get(self.probe, timeout=2).status_code == self.expect
            except requests.RequestException:
                return False

        try:
            wait_for(up, timeout=30, what=f"gunicorn to answer {self.probe}", interval=0.1)
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        if self._log.closed:
            return self._final_log
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if not self._log.closed:
            self._final_log = self.log()
            self._log.close()


class SSOServer:
    """The real service: gunicorn with gevent workers, from the repository root."""

    def __init__(self, redis_url: str, prefix: str, keys: tuple[str, str], workers: int = 2, **env: str) -> None:
        self.port = free_port()
        self.prefix = prefix
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SSO_")},
            "SSO_JWT_PRIVATE_KEY": keys[0],
            "SSO_JWT_PUBLIC_KEY": keys[1],
            "SSO_SERVICE_SECRET": SERVICE_SECRET,
            "REDIS_URL": redis_url,
            "SSO_REDIS_PREFIX": prefix,
            "SSO_ISSUER": ISSUER,
            "SSO_APP_ORIGINS": "http://app.client.test",
            "SSO_ALLOWED_REDIRECT_URIS": REDIRECT_URI,
            "SSO_CLIENTS": "fluxer",
            "SSO_LOGIN_URL": "http://app.client.test/login",
            "SSO_COOKIE_SECURE": "false",
            "SSO_PORT": str(self.port),
            "SSO_WORKERS": str(workers),
            "SSO_ENV_FILE": "/nonexistent/.env",
            "SSO_GRACEFUL_TIMEOUT": "5",
            **env,
        }
        self._metrics = tempfile.TemporaryDirectory(prefix="sso-client-metrics-")
        self.env["PROMETHEUS_MULTIPROC_DIR"] = self._metrics.name
        self.gunicorn = GunicornProcess(
            ["-c", "deploy/gunicorn.conf.py", "wsgi:app"], ROOT, self.env, f"{self.url}/_health"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.gunicorn.start()

    def log(self) -> str:
        return self.gunicorn.log()

    def stop(self) -> None:
        self.gunicorn.stop()
        self._metrics.cleanup()

    # --- driving the OAuth flow as a Fluxer app would ---------------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Service {SERVICE_SECRET}"}

    def login(self, user_id: str) -> dict[str, Any]:
        """A new session (its token is what the browser's SSO cookie holds)."""
        r = requests.post(f"{self.url}/session/create", json={"user_id": user_id, "claims": {"name": "Ada"}},
                          headers=self.headers(), timeout=5)  # fmt: skip
        assert r.status_code == 201, r.text
        return dict(r.json())

    def tokens(self, session_token: str, scope: str = "openid profile") -> dict[str, Any]:
        """authorize -> token with PKCE; the token endpoint's JSON answer."""
        query = {"response_type": "code", "client_id": "fluxer", "redirect_uri": REDIRECT_URI, "state": "s",
                 "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": scope}  # fmt: skip
        r = requests.get(f"{self.url}/authorize", params=query, cookies={COOKIE: session_token},
                         allow_redirects=False, timeout=5)  # fmt: skip
        assert r.status_code == 302, r.text
        code = parse_qs(urlsplit(r.headers["Location"]).query)["code"][0]
        r = requests.post(f"{self.url}/token", timeout=10, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, "client_id": "fluxer"})  # fmt: skip
        assert r.status_code == 200, r.text
        return dict(r.json())

    def access_token(self, user_id: str, scope: str = "openid profile") -> tuple[str, dict[str, Any]]:
        """A fresh session and an access token for it: (token, session JSON)."""
        session = self.login(user_id)
        return self.tokens(session["token"], scope)["access_token"], session


class Script(BaseHTTPRequestHandler):
    """Answers from a list of (status, headers, body), one per request."""

    answers: list[tuple[int, dict[str, str], dict[str, Any]]] = []
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(self.path)
        status, headers, body = self.answers.pop(0)
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass
