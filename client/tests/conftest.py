"""Fixtures for the client's tests: a private Redis, RSA keys, and the real service.

One service (gunicorn, two gevent workers) serves the whole session; each test
works under its own users, and tests that break Redis start their own.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import pytest
import redis as redis_lib
from fluxer_sso_client import JWKSCache, RevocationList, ServiceClient, TokenVerifier
from harness import ISSUER, SERVICE_SECRET, RedisProcess, Script, SSOServer, rsa_pem_pair
from local_tokens import PUBLIC, Clock, jwk_set


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def keys() -> tuple[str, str]:
    return rsa_pem_pair()


@pytest.fixture(scope="session")
def sso(redis_server: RedisProcess, keys: tuple[str, str]) -> Iterator[SSOServer]:
    server = SSOServer(redis_server.url, f"c{uuid.uuid4().hex[:8]}:", keys)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisProcess) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(redis: redis_lib.Redis) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    value = f"t{uuid.uuid4().hex[:10]}:"
    yield value
    stale = list(redis.scan_iter(match=f"{value}*"))
    if stale:
        redis.delete(*stale)


@pytest.fixture
def user() -> str:
    return f"u{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service(sso: SSOServer) -> ServiceClient:
    return ServiceClient(sso.url, SERVICE_SECRET, sleep=lambda _: None)


@pytest.fixture
def revocations() -> RevocationList:
    return RevocationList(max_token_lifetime=3600, leeway=30)


@pytest.fixture
def verifier(sso: SSOServer, revocations: RevocationList) -> TokenVerifier:
    jwks = JWKSCache(f"{sso.url}/.well-known/jwks.json")
    return TokenVerifier(issuer=ISSUER, audience="fluxer-api", jwks=jwks, revocations=revocations)


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[Script]]]:
    """A real HTTP server answering from a script: for the answers the service will not give on demand."""
    handler = type("Handler", (Script,), {"answers": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def local(clock: Clock) -> TokenVerifier:
    """A verifier over a local key set (the fetcher is a function, no HTTP)."""
    jwks = JWKSCache("local", fetch=lambda _: (jwk_set(PUBLIC), "max-age=300"), clock=clock)
    return TokenVerifier(issuer=ISSUER, audience="fluxer-api", jwks=jwks, revocations=RevocationList(clock=clock),
                         clock=clock)  # fmt: skip
