"""The application factory: the one place that wires the service together."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from flask import Flask
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import Settings, load_settings
from sso import __version__
from sso.authorization import AuthorizationService
from sso.cli import sso as sso_cli
from sso.clients import ClientRegistry
from sso.context import OAuthContext
from sso.discovery import discovery_json
from sso.grants import GrantService
from sso.http import register_error_handlers, register_request_hooks
from sso.keys import KeySet
from sso.logout import EndSessionService
from sso.metrics import ScrapeTimeCollector
from sso.openapi import openapi_json
from sso.ratelimit import RateLimiter, limits_from
from sso.redis_timing import TimedRedis
from sso.sessions import SessionService
from sso.store import RedisStore
from sso.tokens import TokenService
from sso.views import browser, meta, oauth, session
from sso.worker import BackgroundWorker

MAX_BODY_BYTES = 64 * 1024
REDIS_TIMEOUT = 1.0  # seconds; with one retry a dead or stalled Redis answers 503 within ~2 s


@dataclass
class Services:
    """Per-app collaborators, kept in ``app.extensions['sso']``."""

    settings: Settings
    redis: redis.Redis
    store: RedisStore
    keys: KeySet
    worker: BackgroundWorker
    sessions: SessionService
    clients: ClientRegistry
    tokens: TokenService
    grants: GrantService
    authorization: AuthorizationService
    end_session: EndSessionService
    limiter: RateLimiter
    discovery_json: bytes
    openapi_json: bytes
    scrape_metrics: ScrapeTimeCollector
    clock: Callable[[], float]


def redis_client(url: str) -> redis.Redis:
    """A pooled client with short timeouts, so a dead Redis fails fast and closed."""
    return TimedRedis.from_url(
        url,
        decode_responses=True,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        # One retry, on a broken connection (a pooled socket to a Redis that has
        # restarted) or a timeout. A timed-out script may still run, so the
        # retried one can be its second run: rotation and code redemption are
        # idempotent per request (same jti / marker), so the retry gets the
        # same answer instead of looking like token reuse (tests/test_faults.py).
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    redis_connection: redis.Redis | None = None,
) -> Flask:
    """Build the Flask app; settings default to the process environment."""
    settings = settings or load_settings(os.environ)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    client = redis_connection or redis_client(settings.redis_url)
    store = RedisStore(client, settings.redis_prefix)
    worker = BackgroundWorker(store, interval=settings.activity_update_interval, clock=clock)
    keys = KeySet(settings.jwt_private_key, [settings.jwt_public_key])
    sessions = SessionService(store, worker, ttl=settings.session_ttl, clock=clock)
    clients = ClientRegistry(settings.clients, settings.allowed_redirect_uris)
    tokens = TokenService(keys, store, settings, clock)
    ctx = OAuthContext(store=store, clients=clients, worker=worker, settings=settings, clock=clock)
    app.extensions["sso"] = Services(
        settings=settings,
        redis=client,
        store=store,
        keys=keys,
        worker=worker,
        sessions=sessions,
        clients=clients,
        tokens=tokens,
        grants=GrantService(ctx, tokens),
        authorization=AuthorizationService(ctx),
        end_session=EndSessionService(tokens=tokens, sessions=sessions, clients=clients, settings=settings),
        limiter=RateLimiter(store, limits_from(settings), clock=clock),
        discovery_json=discovery_json(settings),
        openapi_json=openapi_json(),
        scrape_metrics=ScrapeTimeCollector(
            store.count_live_sessions, {"version": __version__, "kid": keys.kid, "python": platform.python_version()}
        ),
        clock=clock,
    )

    for blueprint in (meta.bp, session.bp, browser.bp, oauth.bp):
        app.register_blueprint(blueprint)
    app.cli.add_command(sso_cli)
    register_error_handlers(app)
    register_request_hooks(app)
    logging.getLogger("sso").setLevel(logging.INFO)
    return app
