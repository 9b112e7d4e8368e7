"""Which Redis deployment REDIS_URL names (the clients that talk to it: sso/store/connections.py).

SPEC.md "Redis topologies": one server (``redis://``, ``rediss://``, ``unix://``),
Sentinel (``redis+sentinel://[[user]:password@]host:port[,host:port…]/<master>[/db]``,
``rediss+sentinel://`` with TLS) or Cluster
(``redis+cluster://[[user]:password@]host:port[,host:port…]``, ``rediss+cluster://``).

Decisions, so operators can rely on them:

- The credentials in the URL are those of the data nodes (master, replicas,
  cluster nodes). Sentinels are separate processes that are often run without
  a password, and sending AUTH to a sentinel that has none fails, so they get
  their own optional query parameters: ``?sentinel_password=…`` (and
  ``sentinel_username=…``). Without them the sentinels are asked without AUTH.
- TLS (``rediss+…``) applies to every connection, sentinels included;
  ``?ssl_ca_certs=/path.pem`` names a CA bundle other than the system's.
- Ports default to 26379 for sentinels and 6379 for cluster seeds.
- A cluster has only database 0, so a cluster URL carries no path other than
  ``/`` or ``/0``; a sentinel URL must name its master.
- In the Sentinel and Cluster forms the userinfo ends at the last ``@``
  before the query, so a password may hold ``/`` and ``@`` unescaped (base64
  passwords often hold ``/``); ``?`` and ``#`` must be ``%3F`` and ``%23``. The
  one-server forms go to redis-py, whose parser ends the userinfo at the first
  ``/``, ``?`` or ``#``, so there all four must be percent-encoded. An ``@``
  after that point (in the path or a query value) is refused in every form,
  with a message saying so: it is where a password's unescaped remainder lands,
  and a query value can say ``%40``.
- Every parse error is a ``ValueError`` whose text never contains any part of
  the userinfo, nor a host or port (which a misplaced userinfo could be);
  settings turn it into a ConfigError for REDIS_URL. ``RedisTarget.describe()``
  is the only form of the target that goes to logs.

This module imports no redis-py, so validating the settings does not either:
redis imports ssl, which must not happen in gunicorn's master before the
gevent workers patch it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

Kind = Literal["single", "sentinel", "cluster"]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_PORT = 26379
CLUSTER_PORT = 6379
QUERY_PARAMETERS = {
    "sentinel": ("sentinel_username", "sentinel_password", "ssl_ca_certs"),
    "cluster": ("ssl_ca_certs",),
}
HOST_RE = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[^:]*))?$")
SCHEMES_HELP = (
    "redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://"
)
ESCAPE_SINGLE = (
    "has an '@' after the host: percent-encode / ? # @ in the user name and password "
    "(%2F %3F %23 %40), and @ in query values"
)
ESCAPE_MULTI = "has an '@' in the query: percent-encode ? and # in the password (%3F %23), and @ in query values (%40)"


@dataclass(frozen=True)
class RedisTarget:
    """A parsed REDIS_URL: what to connect to, with which credentials."""

    kind: Kind
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    master_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    # single only: the URL itself, handed to redis-py's from_url unchanged
    url: str | None = field(default=None, repr=False)
    unix_path: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None

    @property
    def has_replicas(self) -> bool:
        """Whether writes are copied to replicas, so WAIT can make them survive a failover."""
        return self.kind != "single"

    def describe(self) -> str:
        """One line for logs and health output; never a password."""
        hosts = ",".join(_host_port(host, port) for host, port in self.hosts)
        if self.kind == "sentinel":
            text = f"sentinel master {self.master_name!r} via {hosts} db {self.db}"
        elif self.kind == "cluster":
            text = f"cluster via {hosts}"
        elif self.unix_path is not None:
            text = f"redis unix socket {self.unix_path} db {self.db}"
        else:
            text = f"redis {hosts} db {self.db}"
        if self.username:
            text += f", user {self.username!r}"
        return text + (", tls" if self.tls else "")


def parse_redis_url(url: str) -> RedisTarget:
    """Parse REDIS_URL, or raise ValueError with a message that names no secret."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        # urlsplit silently drops tabs and newlines: what redis-py used would not be what was logged
        raise ValueError("must not contain control characters (a tab or newline pasted into it?)")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(f"must start with {SCHEMES_HELP}")
    if scheme in SINGLE_SCHEMES:
        return _parse_single(url, scheme)
    if scheme in SENTINEL_SCHEMES or scheme in CLUSTER_SCHEMES:
        return _parse_multi(scheme, rest)
    raise ValueError(f"must start with {SCHEMES_HELP}")


def _parse_single(url: str, scheme: str) -> RedisTarget:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if "@" in parts.path + parts.query + parts.fragment:
        raise ValueError(ESCAPE_SINGLE)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    query = parse_qs(parts.query)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// needs a socket path, e.g. unix:///run/redis.sock?db=0")
        return RedisTarget(
            kind="single",
            hosts=(),
            db=_db(query.get("db", ["0"])[-1]),
            username=username,
            password=password,
            url=url,
            unix_path=parts.path,
        )
    if not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host, e.g. {scheme}://127.0.0.1:6379/0")
    path = parts.path.strip("/")
    db = _db(query["db"][-1] if "db" in query else path or "0")
    return RedisTarget(
        kind="single",
        hosts=((parts.hostname, port or 6379),),
        db=db,
        username=username,
        password=password,
        tls=scheme == "rediss",
        url=url,
    )


def _parse_multi(scheme: str, rest: str) -> RedisTarget:
    kind: Kind = "sentinel" if scheme.endswith("+sentinel") else "cluster"
    location, _, query_string = rest.partition("?")
    if "#" in location or "#" in query_string:
        raise ValueError("must not carry a fragment")
    if "@" in query_string:
        raise ValueError(ESCAPE_MULTI)
    # The userinfo first, up to the last '@': a password's '/' is not where the host list ends.
    userinfo, at, address = location.rpartition("@")
    hostlist, slash, path = address.partition("/")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon and user:  # redis-py's convention: a lone userinfo is the password
            username, password = None, unquote(user)
    default_port = SENTINEL_PORT if kind == "sentinel" else CLUSTER_PORT
    hosts = tuple(_host(number, item.strip(), default_port) for number, item in enumerate(hostlist.split(","), 1))
    options = _query(kind, query_string)
    if kind == "cluster":
        if path.strip("/") not in ("", "0"):
            raise ValueError("a cluster has only database 0: drop the path or use /0")
        master_name, db = None, 0
    else:
        name, _, db_text = unquote(path).partition("/")
        if not slash or not name:
            raise ValueError(
                "a sentinel URL must name the master: redis+sentinel://host:port[,host:port]/<master>[/db]"
            )
        master_name, db = name, _db(db_text.strip("/") or "0")
    return RedisTarget(
        kind=kind,
        hosts=hosts,
        db=db,
        master_name=master_name,
        username=username,
        password=password,
        tls=scheme.startswith("rediss"),
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
        ssl_ca_certs=options.get("ssl_ca_certs"),
    )


def _host(number: int, item: str, default_port: int) -> tuple[str, int]:
    """One ``host[:port]`` of the list; an error names it by position, never by its text."""
    match = HOST_RE.fullmatch(item)
    if not item or not match:
        raise ValueError("needs host:port pairs separated by commas, e.g. 10.0.0.1:26379,10.0.0.2:26379")
    host = match["ipv6"] or match["name"]
    port_text = match["port"]
    if port_text is None or port_text == "":
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"host {number} has an invalid port (1-65535)")
    return host, int(port_text)


def _query(kind: Kind, query_string: str) -> dict[str, str]:
    try:
        query = parse_qs(query_string, keep_blank_values=True, strict_parsing=bool(query_string))
    except ValueError:
        raise ValueError("has a malformed query string") from None
    allowed = QUERY_PARAMETERS[kind]
    for name, values in query.items():
        if name not in allowed:  # not echoed: text that was meant for elsewhere can end up here
            raise ValueError(f"has an unknown query parameter for {kind} (allowed: {', '.join(allowed)})")
        if len(values) != 1:
            raise ValueError(f"query parameter {name!r} is repeated")
    return {name: values[0] for name, values in query.items()}


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the database must be a non-negative integer, got {text!r}")
    return int(text)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
