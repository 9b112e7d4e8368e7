"""What a process runs with, said once at start: the line an operator reads first.

Each gunicorn worker logs one ``sso.start`` line (issuer, Redis with its
password masked, topology, key ids, worker count, bind addresses) from
``post_worker_init``, so a SIGHUP reload that picked up new configuration says
so too. In development it also warns about the two mistakes that make a local
flow fail without an error: an issuer whose port is not the one gunicorn
listens on, and a ``Secure`` cookie over plain http.

"Development" means: the issuer is plain ``http://`` on a loopback host
(``localhost``, ``127.0.0.0/8``, ``::1``). There the browser talks to gunicorn
directly, so the issuer's port must be a port gunicorn binds; in production a
proxy (nginx) stands in between and the ports differ by design.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from config.redis_url import parse_redis_url
from config.settings import Settings

log = logging.getLogger("sso.start")


def masked_redis_url(url: str) -> str:
    """``REDIS_URL`` as it may be logged; Sentinel and Cluster described by their parsed target.

    A one-server URL keeps its user, host, port and database; its password
    becomes ``***`` (``redis://user:***@host``), and so does a lone userinfo
    (``redis://***@host``: the Sentinel and Cluster forms read it as the
    password) and every query value but ``db`` (redis-py takes ``?password=``).
    """
    try:
        target = parse_redis_url(url)
    except ValueError:
        return "(an invalid REDIS_URL)"
    if target.kind != "single":
        return target.describe()
    scheme, _, rest = url.partition("://")
    netloc = urlsplit(url).netloc  # rebuilt by hand: urlunsplit would turn unix:///path into unix:/path
    path, question, query = rest[len(netloc) :].partition("?")
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{host}" if colon else f"***@{host}"
    return f"{scheme}://{netloc}{path}{question}{'&'.join(_masked_field(field) for field in query.split('&'))}"


def _masked_field(field: str) -> str:
    """One ``name=value`` of the query: ``db`` as it is, any other value as ``***``."""
    name, eq, _ = field.partition("=")
    return field if name == "db" or not field else f"{name}=***" if eq else "***"


def redis_topology(url: str) -> str:
    """``single``, ``sentinel`` or ``cluster``."""
    try:
        return parse_redis_url(url).kind
    except ValueError:
        return "invalid"


def is_development(issuer: str) -> bool:
    """Plain http on a loopback host: the browser reaches gunicorn with no proxy between."""
    parts = urlsplit(issuer)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def _bound_ports(binds: Sequence[str]) -> set[int]:
    ports = set()
    for bind in binds:
        if bind.startswith(("unix:", "fd://")):
            continue
        _, _, port = bind.rpartition(":")
        if port.isdigit():
            ports.add(int(port))
    return ports


def warnings_for(settings: Settings, binds: Sequence[str]) -> list[str]:
    """Development mistakes that fail silently in a browser; empty outside development."""
    if not is_development(settings.issuer):
        return []
    found = []
    issuer_port = urlsplit(settings.issuer).port or 80
    ports = _bound_ports(binds)
    if ports and issuer_port not in ports:
        found.append(
            f"SSO_ISSUER {settings.issuer} names port {issuer_port} but gunicorn listens on "
            f"{', '.join(binds)}: discovery, redirects and the iss of every token point at a port nobody serves"
        )
    if settings.cookie_secure:
        found.append(
            "SSO_COOKIE_SECURE=true with a plain http issuer: HTTP clients will not send the SSO cookie back; "
            "set SSO_COOKIE_SECURE=false for local development"
        )
    return found


def summary(settings: Settings, kids: Sequence[str], *, workers: int, binds: Sequence[str]) -> dict[str, Any]:
    """The start-up facts as log fields; nothing secret (the Redis password is masked)."""
    return {
        "issuer": settings.issuer,
        "redis": masked_redis_url(settings.redis_url),
        "redis_topology": redis_topology(settings.redis_url),
        "redis_prefix": settings.redis_prefix,
        "kids": list(kids),
        "signing_kid": kids[0] if kids else None,
        "workers": workers,
        "bind": list(binds),
        "clients": list(settings.clients),
        "cookie_secure": settings.cookie_secure,
    }


def log_start(settings: Settings, kids: Sequence[str], *, workers: int, binds: Sequence[str]) -> None:
    """One ``sso.start`` info line, then one warning line per development mistake."""
    log.info("fluxer-sso worker started", extra=summary(settings, kids, workers=workers, binds=binds))
    for warning in warnings_for(settings, binds):
        log.warning(warning)
