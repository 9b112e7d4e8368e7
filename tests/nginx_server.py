"""A real nginx serving deploy/nginx/fluxer-sso.conf on loopback, started by a test.

The site file is used as shipped; only the lines an operator edits (listen
addresses, certificate paths, the include, log and cache paths) and the upstream
port are rewritten (tests/deploy_files.py). nginx runs in the foreground with a
private prefix and binds only 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.deploy_files import DEPLOY, substitute
from tests.redis_server import free_port
from tests.server import terminate
from tests.waiting import wait_for

NGINX_DIR = DEPLOY / "nginx"
SITE = NGINX_DIR / "fluxer-sso.conf"
INTERNAL_NETWORKS = NGINX_DIR / "internal-networks.conf"
LOOPBACK_RULES = ("allow 127.0.0.1;", "allow ::1;")


def nginx_binary() -> str | None:
    """nginx on PATH or in /usr/sbin (not on a non-root user's PATH on Debian)."""
    return shutil.which("nginx", path=f"{os.environ.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin")


def write_self_signed_certificate(cert_path: Path, key_path: Path) -> None:
    """A throwaway P-256 certificate for 127.0.0.1 and localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


class NginxServer:
    """``nginx -p <tmp> -g 'daemon off; ...'`` serving the rendered site."""

    def __init__(
        self,
        upstream_port: int,
        *,
        https_port: int | None = None,
        allow_loopback: bool = True,
        replacements: dict[str, str] | None = None,
    ) -> None:
        self.binary = nginx_binary()
        if self.binary is None:
            raise RuntimeError("nginx not found")
        self.upstream_port = upstream_port
        self.https_port = https_port or free_port()
        self.http_port = free_port()
        self.allow_loopback = allow_loopback
        self.replacements = replacements or {}  # further edits to the site, e.g. a shorter cache TTL
        self.dir = Path(tempfile.mkdtemp(prefix="sso-test-nginx-"))
        self.dir.chmod(0o711)  # run as root, nginx's workers are "nobody" and must reach their temp dirs
        self.cert = self.dir / "cert.pem"
        self.access_log = self.dir / "access.log"
        self.error_log = self.dir / "error.log"
        self.config_test_output = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def render(self) -> Path:
        """Write the certificate, the allow list, the site and a main config; return the main config."""
        key = self.dir / "key.pem"
        write_self_signed_certificate(self.cert, key)
        networks = substitute(INTERNAL_NETWORKS, {} if self.allow_loopback else dict.fromkeys(LOOPBACK_RULES, ""))
        (self.dir / "internal-networks.conf").write_text(networks)
        site = substitute(
            SITE,
            {
                "server 127.0.0.1:8090;": f"server 127.0.0.1:{self.upstream_port};",
                "listen 443 ssl;": f"listen 127.0.0.1:{self.https_port} ssl;",
                "listen [::]:443 ssl;": "",
                "listen 80;": f"listen 127.0.0.1:{self.http_port};",
                "listen [::]:80;": "",
                "/etc/letsencrypt/live/sso.example.com/fullchain.pem": str(self.cert),
                "/etc/letsencrypt/live/sso.example.com/privkey.pem": str(key),
                "/etc/nginx/fluxer-sso/internal-networks.conf": str(self.dir / "internal-networks.conf"),
                "/var/log/nginx/fluxer-sso.access.log": str(self.access_log),
                "/var/log/nginx/fluxer-sso.error.log": str(self.error_log),
                "/var/www/html": str(self.dir / "acme"),
                "/var/cache/nginx-fluxer-sso": str(self.dir / "cache"),
                **self.replacements,
            },
        )
        listens = [line.strip() for line in site.splitlines() if line.strip().startswith("listen ")]
        if not listens or not all(line.startswith("listen 127.0.0.1:") for line in listens):
            raise AssertionError(f"the rendered site would bind beyond loopback: {listens}")
        (self.dir / "fluxer-sso.conf").write_text(site)
        (self.dir / "tmp").mkdir()
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.dir}/tmp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        main = self.dir / "nginx.conf"
        main.write_text(
            "worker_processes 1;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {self.dir}/other-access.log;\n"
            f"{temp_paths}\n"
            f"    include {self.dir}/fluxer-sso.conf;\n"
            "}\n"
        )
        return main

    def _command(self, main: Path, *extra: str) -> list[str]:
        assert self.binary is not None
        directives = f"daemon off; pid {self.dir}/nginx.pid; error_log {self.dir}/main-error.log warn;"
        return [self.binary, "-p", f"{self.dir}/", "-c", str(main), "-e", str(self.dir / "main-error.log"),
                "-g", directives, *extra]  # fmt: skip

    def start(self, timeout: float = 10) -> None:
        main = self.render()
        check = subprocess.run(self._command(main, "-t"), capture_output=True, text=True, timeout=timeout)
        self.config_test_output = check.stdout + check.stderr
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {self.config_test_output}")
        self.proc = subprocess.Popen(self._command(main), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.read_log('main-error.log')}")
            try:
                with socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5):
                    return True
            except OSError:
                return False

        try:
            wait_for(listening, timeout=timeout, what="nginx to listen", interval=0.05)
        except RuntimeError:
            self.stop()
            raise

    def read_log(self, name: str) -> str:
        path = self.dir / name
        return path.read_text(errors="replace") if path.exists() else ""

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """An HTTPS request that verifies nginx's certificate; redirects are not followed."""
        kwargs.setdefault("timeout", 10)
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, f"{self.url}{path}", verify=str(self.cert), **kwargs)

    def stop(self, timeout: float = 10) -> None:
        """Fast shutdown (SIGTERM), then remove every file this server wrote."""
        if self.proc is not None:
            terminate(self.proc, timeout)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
