"""Settings loaded once from the environment and validated before anything starts.

docs/contract.md's configuration table is the contract. Every bad variable raises
``ConfigError`` naming that variable, so the entry points can stop the process
with one clear line; secret values never appear in the message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from config.redis_url import parse_redis_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9:_.-]{0,32}$")
PEM_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z ]+)-----\s.*?-----END \1-----", re.DOTALL)
MIN_RSA_BITS = 2048
MIN_SECRET_LENGTH = 32
# The ceiling of every duration (TTLs, intervals, rate-limit windows): no deployment wants more,
# and below it every timestamp, JWT exp, cookie Max-Age and Redis EXPIRE the service computes is
# valid (10**12 s overflowed datetime and made every /session/create a 500).
MAX_SECONDS = 315360000
MAX_SECONDS_TEXT = "10 years"


PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE_RE = re.compile(r"^([0-9]+)\s*/\s*([0-9]*)\s*(second|minute|hour|day)s?$")


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` counted events per fixed window of ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


class ConfigError(ValueError):
    """A configuration variable is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True)
class Settings:
    """Everything the service needs, validated; build it directly in tests."""

    jwt_private_key: str = field(repr=False)
    jwt_public_key: str = field(repr=False)
    service_secrets: tuple[str, ...] = field(repr=False)
    port: int = 8090
    redis_url: str = DEFAULT_REDIS_URL
    issuer: str = "http://localhost:8090"
    access_token_ttl: int = 900
    refresh_token_ttl: int = 2592000
    session_ttl: int = 2592000
    activity_update_interval: int = 300
    app_origins: tuple[str, ...] = ("http://localhost:3000",)
    allowed_redirect_uris: tuple[str, ...] = ("http://localhost:3000/oauth/callback",)
    clients: tuple[str, ...] = ("fluxer",)
    login_url: str = "http://localhost:3000/login"
    cookie_domain: str = ""
    cookie_secure: bool = True
    refresh_reuse_grace: int = 0
    redis_prefix: str = "sso:"
    access_token_audience: str = "fluxer-api"
    max_sessions_per_user: int = 100
    # Further public keys published in the JWKS and accepted for verification (key rotation).
    jwt_extra_public_keys: tuple[str, ...] = field(default=(), repr=False)
    jwks_max_age: int = 300
    event_log_retention: int = 86400
    # OIDC Back-Channel Logout: client id -> the URI its Logout Tokens are POSTed to.
    backchannel_logout_uris: tuple[tuple[str, str], ...] = ()
    # Failures counted per client address (sso/ratelimit.py); None switches a limit off.
    rate_limit_service_auth_failures: RateLimit | None = RateLimit(20, 60)
    rate_limit_token_failures: RateLimit | None = RateLimit(60, 60)
    rate_limit_authorize_failures: RateLimit | None = RateLimit(60, 60)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]+", raw):
        raise ConfigError(name, f"must be a non-negative integer, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A duration: an integer of seconds, at most MAX_SECONDS."""
    value = _int(env, name, default, minimum=minimum)
    if value > MAX_SECONDS:
        raise ConfigError(name, f"must be at most {MAX_SECONDS} ({MAX_SECONDS_TEXT}), got {value}")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _rate(env: Mapping[str, str], name: str, default: RateLimit | None) -> RateLimit | None:
    """``20/minute``, ``100/hour``, ``5/10seconds``; ``off`` (or a count of 0) disables the limit."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("off", "none", "0"):
        return None
    match = RATE_RE.fullmatch(raw)
    if not match:
        raise ConfigError(name, f"must look like 20/minute (count/[n]second|minute|hour|day) or off, got {raw!r}")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
    if count == 0:
        return None
    if multiple == 0:
        raise ConfigError(name, f"the period must not be zero, got {raw!r}")
    if multiple * PERIODS[unit] > MAX_SECONDS:
        raise ConfigError(name, f"the period must be at most {MAX_SECONDS} seconds ({MAX_SECONDS_TEXT}), got {raw!r}")
    return RateLimit(count, multiple * PERIODS[unit])


def _http_url(name: str, value: str, *, origin_only: bool = False) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"{_shown(value)!r} is not an absolute http(s) URL")
    # userinfo first, and no message quotes it or the query: either may hold a credential
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise ConfigError(name, f"a URL of host {parts.hostname!r} must not carry userinfo or a fragment")
    try:  # urlsplit checks the port only when it is read; unchecked, the first worker to read it dies
        good_port = parts.port != 0
    except ValueError:
        good_port = False
    if not good_port:
        raise ConfigError(name, f"{_shown(value)!r} has an invalid port (1-65535)")
    if origin_only and (parts.path not in ("", "/") or parts.query):
        raise ConfigError(name, f"{_shown(value)!r} must be an origin (scheme://host[:port])")
    return value


def _shown(value: str) -> str:
    """A URL setting as an error may quote it: without userinfo or query (either may carry a secret)."""
    scheme, sep, rest = value.partition("?")[0].partition("#")[0].partition("://")
    if not sep:
        return "(not a URL)" if "@" in scheme else scheme
    netloc, slash, path = rest.partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def _origin(name: str, value: str) -> str:
    _http_url(name, value, origin_only=True)
    return value.rstrip("/")


def _private_key(pem: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("SSO_JWT_PRIVATE_KEY", "not a readable unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
        raise ConfigError("SSO_JWT_PRIVATE_KEY", "must be an RSA key of at least 2048 bits")
    return key


def _public_key(pem: str) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError("SSO_JWT_PUBLIC_KEY", "not a readable PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError("SSO_JWT_PUBLIC_KEY", "must be an RSA public key")
    return key


def _extra_public_keys(env: Mapping[str, str], signing: rsa.RSAPublicKey) -> tuple[str, ...]:
    """Zero or more concatenated PEM blocks; each RSA of at least 2048 bits, none repeated.

    The signing key's own public key is refused rather than ignored: it is the
    mistake of switching the signing key without moving the old public key here,
    which would silently refuse every token the old key signed.
    """
    name = "SSO_JWT_EXTRA_PUBLIC_KEYS"
    raw = env.get(name, "").strip().replace("\\n", "\n")
    blocks = [match.group(0) for match in PEM_BLOCK_RE.finditer(raw)]
    if PEM_BLOCK_RE.sub("", raw).strip():
        raise ConfigError(name, "must hold only PEM public key blocks (-----BEGIN PUBLIC KEY----- ...)")
    seen = [signing.public_numbers()]
    for number, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(name, f"key {number} is not a readable PEM public key") from exc
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            raise ConfigError(name, f"key {number} must be an RSA key of at least {MIN_RSA_BITS} bits")
        if key.public_numbers() == seen[0]:
            raise ConfigError(name, f"key {number} is the signing key itself; list the previous or next key here")
        if key.public_numbers() in seen:
            raise ConfigError(name, f"key {number} is listed twice")
        seen.append(key.public_numbers())
    return tuple(block + "\n" for block in blocks)


def _pem(env: Mapping[str, str], name: str) -> str:
    # .env files and container runtimes often carry PEMs on one line with "\n".
    value = env.get(name, "").strip().replace("\\n", "\n")
    if not value:
        raise ConfigError(name, "is required (run `make keys`)")
    return value + "\n"


def _backchannel_uris(env: Mapping[str, str], clients: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``client_id=https://…`` pairs: https, or plain http only to a loopback address (development)."""
    name = "SSO_BACKCHANNEL_LOGOUT_URIS"
    pairs: list[tuple[str, str]] = []
    for item in _list(env, name):
        client, sep, uri = item.partition("=")
        if not sep or client not in clients:
            raise ConfigError(name, f"{client!r}={_shown(uri)!r} must be client_id=URI with a client of SSO_CLIENTS")
        parts = urlsplit(_http_url(name, uri))
        if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ConfigError(name, f"{_shown(uri)!r} must be https (plain http only to a loopback address)")
        if client in dict(pairs):
            raise ConfigError(name, f"{client!r} is listed twice")
        pairs.append((client, uri))
    return tuple(pairs)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping, or raise ConfigError."""
    private_pem = _pem(env, "SSO_JWT_PRIVATE_KEY")
    public_pem = _pem(env, "SSO_JWT_PUBLIC_KEY")
    private_key = _private_key(private_pem)
    if private_key.public_key().public_numbers() != _public_key(public_pem).public_numbers():
        raise ConfigError("SSO_JWT_PUBLIC_KEY", "does not match SSO_JWT_PRIVATE_KEY")
    extra_public_keys = _extra_public_keys(env, private_key.public_key())

    secrets = _list(env, "SSO_SERVICE_SECRET")
    if not secrets:
        raise ConfigError("SSO_SERVICE_SECRET", "is required (run `make keys`)")
    # Entropy, not the rate limits, defeats guessing (SPEC.md, Rate limits): `make keys` makes 43.
    if any(len(secret) < MIN_SECRET_LENGTH for secret in secrets):
        raise ConfigError("SSO_SERVICE_SECRET", f"each secret must be at least {MIN_SECRET_LENGTH} characters")

    port = _int(env, "SSO_PORT", 8090, minimum=1)
    if port > 65535:
        raise ConfigError("SSO_PORT", f"must be at most 65535, got {port}")

    redis_url = env.get("REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    try:
        parse_redis_url(redis_url)
    except ValueError as exc:  # the message names no secret (config/redis_url.py)
        raise ConfigError("REDIS_URL", str(exc)) from None

    issuer = _http_url("SSO_ISSUER", env.get("SSO_ISSUER", "").strip() or "http://localhost:8090")
    if urlsplit(issuer).query:
        raise ConfigError("SSO_ISSUER", "must not have a query (RFC 8414 §2)")
    issuer = issuer.rstrip("/")

    origins = tuple(_origin("SSO_APP_ORIGINS", o) for o in _list(env, "SSO_APP_ORIGINS"))
    origins = origins or ("http://localhost:3000",)
    redirect_uris = tuple(
        _http_url("SSO_ALLOWED_REDIRECT_URIS", u) for u in _list(env, "SSO_ALLOWED_REDIRECT_URIS")
    ) or tuple(f"{origin}/oauth/callback" for origin in origins)

    clients = _list(env, "SSO_CLIENTS") or ("fluxer",)
    for client in clients:
        if not CLIENT_ID_RE.fullmatch(client):
            raise ConfigError("SSO_CLIENTS", f"{client!r} is not a valid client id")

    login_url = env.get("SSO_LOGIN_URL", "").strip() or f"{origins[0]}/login"
    _http_url("SSO_LOGIN_URL", login_url)

    prefix = env.get("SSO_REDIS_PREFIX", "sso:")
    if not PREFIX_RE.fullmatch(prefix):
        raise ConfigError("SSO_REDIS_PREFIX", "may hold only letters, digits and : _ . - (32 at most)")

    cookie_domain = env.get("SSO_COOKIE_DOMAIN", "").strip()
    if cookie_domain and not re.fullmatch(r"\.?[A-Za-z0-9.-]+", cookie_domain):
        raise ConfigError("SSO_COOKIE_DOMAIN", f"{cookie_domain!r} is not a domain name")

    audience = env.get("SSO_ACCESS_TOKEN_AUDIENCE", "").strip() or "fluxer-api"

    return Settings(
        jwt_private_key=private_pem,
        jwt_public_key=public_pem,
        service_secrets=secrets,
        port=port,
        redis_url=redis_url,
        issuer=issuer,
        access_token_ttl=_seconds(env, "SSO_ACCESS_TOKEN_TTL", 900, minimum=1),
        refresh_token_ttl=_seconds(env, "SSO_REFRESH_TOKEN_TTL", 2592000, minimum=1),
        session_ttl=_seconds(env, "SSO_SESSION_TTL", 2592000, minimum=1),
        activity_update_interval=_seconds(env, "SSO_ACTIVITY_UPDATE_INTERVAL", 300),
        app_origins=origins,
        allowed_redirect_uris=redirect_uris,
        clients=clients,
        login_url=login_url,
        cookie_domain=cookie_domain,
        cookie_secure=_bool(env, "SSO_COOKIE_SECURE", True),
        refresh_reuse_grace=_seconds(env, "SSO_REFRESH_REUSE_GRACE", 0),
        redis_prefix=prefix,
        access_token_audience=audience,
        max_sessions_per_user=_int(env, "SSO_MAX_SESSIONS_PER_USER", 100, minimum=1),
        jwt_extra_public_keys=extra_public_keys,
        jwks_max_age=_seconds(env, "SSO_JWKS_MAX_AGE", 300),
        event_log_retention=_seconds(env, "SSO_EVENT_LOG_RETENTION", 86400, minimum=60),
        backchannel_logout_uris=_backchannel_uris(env, clients),
        rate_limit_service_auth_failures=_rate(
            env, "SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES", Settings.rate_limit_service_auth_failures
        ),
        rate_limit_token_failures=_rate(env, "SSO_RATE_LIMIT_TOKEN_FAILURES", Settings.rate_limit_token_failures),
        rate_limit_authorize_failures=_rate(
            env, "SSO_RATE_LIMIT_AUTHORIZE_FAILURES", Settings.rate_limit_authorize_failures
        ),
    )
