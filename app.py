"""The application factory: the one place that wires the service together."""

from __future__ import annotations

import functools
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config.redis_url import parse_redis_url
from config.settings import Settings, load_settings
from sso import __version__
from sso.accounting import RequestAccounting
from sso.authorization import AuthorizationService
from sso.backchannel import BackchannelLogout
from sso.cli import sso as sso_cli
from sso.clients import ClientRegistry
from sso.context import OAuthContext
from sso.discovery import discovery_json
from sso.fastpath import FORM, JSON, FastPath, Redirect, Route
from sso.grants import GrantService
from sso.http import register_error_handlers, register_request_hooks
from sso.keys import KeySet
from sso.logout import EndSessionService
from sso.metrics import ScrapeTimeCollector
from sso.openapi import openapi_json
from sso.precomputed import Document, PrecomputedResponses
from sso.ratelimit import RateLimiter, limits_from
from sso.redis_timing import TimedRedis, TimedRedisCluster
from sso.schemas import TokenInputSchema, TokenSchema, ValidateSessionSchema
from sso.sessions import SessionService
from sso.store import RedisStore
from sso.store.connections import Client, connect
from sso.tokens import TokenService
from sso.views import browser, meta, oauth, session
from sso.worker import BackgroundWorker

MAX_BODY_BYTES = 64 * 1024
REDIS_TIMEOUT = 1.0  # seconds; with one retry a dead or stalled Redis answers 503 within ~2 s


@dataclass
class Services:
    """Per-app collaborators, kept in ``app.extensions['sso']``."""

    settings: Settings
    redis: Client
    store: RedisStore
    keys: KeySet
    worker: BackgroundWorker
    backchannel: BackchannelLogout | None
    sessions: SessionService
    clients: ClientRegistry
    tokens: TokenService
    grants: GrantService
    authorization: AuthorizationService
    end_session: EndSessionService
    limiter: RateLimiter
    documents: dict[str, Document]  # discovery, JWKS, OpenAPI: answered from bytes (sso/precomputed.py)
    scrape_metrics: ScrapeTimeCollector
    clock: Callable[[], float]


def redis_client(url: str) -> Client:
    """A pooled client with short timeouts, so a dead Redis fails fast and closed (sso/store/connections.py),
    every round trip timed (sso/redis_timing.py)."""
    return connect(parse_redis_url(url), timeout=REDIS_TIMEOUT, redis_class=TimedRedis, cluster_class=TimedRedisCluster)


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    redis_connection: Client | None = None,
    trusted_proxies: int = 0,
) -> Flask:
    """Build the Flask app; settings default to the process environment.

    ``trusted_proxies``: how many proxy hops set X-Forwarded-For/-Proto/-Host (wsgi.py: 1, nginx).
    """
    settings = settings or load_settings(os.environ)
    app = Flask(__name__, static_folder=None)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    client = redis_connection or redis_client(settings.redis_url)
    target = parse_redis_url(settings.redis_url)
    store = RedisStore(
        client,
        settings.redis_prefix,
        wait_for_replica=target.has_replicas,
        max_sessions_per_user=settings.max_sessions_per_user,
        event_log_retention=settings.event_log_retention,
    )
    keys = KeySet(settings.jwt_private_key, [settings.jwt_public_key, *settings.jwt_extra_public_keys])
    backchannel = (
        BackchannelLogout(dict(settings.backchannel_logout_uris), keys, settings.issuer, clock=clock)
        if settings.backchannel_logout_uris
        else None
    )
    worker = BackgroundWorker(store, interval=settings.activity_update_interval, clock=clock, backchannel=backchannel)
    sessions = SessionService(store, worker, ttl=settings.session_ttl, clock=clock, backchannel=backchannel)
    clients = ClientRegistry(settings.clients, settings.allowed_redirect_uris)
    tokens = TokenService(keys, store, settings, clock, worker=worker)
    ctx = OAuthContext(store=store, clients=clients, worker=worker, settings=settings, clock=clock)
    app.extensions["sso"] = Services(
        settings=settings,
        redis=client,
        store=store,
        keys=keys,
        worker=worker,
        backchannel=backchannel,
        sessions=sessions,
        clients=clients,
        tokens=tokens,
        grants=GrantService(ctx, tokens),
        authorization=AuthorizationService(ctx, tokens.id_token_hint_subject),
        end_session=EndSessionService(tokens=tokens, sessions=sessions, clients=clients, settings=settings),
        limiter=RateLimiter(store, limits_from(settings), clock=clock),
        documents={
            meta.DISCOVERY: Document(meta.DISCOVERY, discovery_json(settings), meta.PUBLIC_CACHE),
            meta.JWKS: Document(meta.JWKS, keys.jwks_json, f"public, max-age={settings.jwks_max_age}"),
            meta.OPENAPI: Document(meta.OPENAPI, openapi_json(), meta.PUBLIC_CACHE),
        },
        scrape_metrics=ScrapeTimeCollector(
            store.count_live_sessions, {"version": __version__, "kid": keys.kid, "python": platform.python_version()}
        ),
        clock=clock,
    )

    for blueprint in (meta.bp, session.bp, browser.bp, oauth.bp):
        app.register_blueprint(blueprint)
    app.cli.add_command(sso_cli)
    register_error_handlers(app)
    accounting = RequestAccounting()
    register_request_hooks(app, accounting)
    logging.getLogger("sso").setLevel(logging.INFO)
    services = app.extensions["sso"]
    # the plain success of the calls that carry the load, before Flask (sso/fastpath.py)
    flask_app = FastPath(
        app.wsgi_app,
        [
            Route("/session/validate", JSON, ValidateSessionSchema(), functools.partial(session.validation, sessions)),
            Route("/introspect", FORM, TokenInputSchema(), functools.partial(oauth.introspection, tokens)),
            Route(
                "/token",
                FORM,
                TokenSchema(),
                functools.partial(oauth.issuance, services.grants),
                service=False,
                cors_origins=tuple(settings.app_origins),
            ),
            Redirect("/authorize", functools.partial(oauth.authorization, services.authorization)),
        ],
        flask=app,
        secrets=settings.service_secrets,
        accounting=accounting,
    )
    if trusted_proxies:
        n = trusted_proxies
        flask_app = ProxyFix(flask_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[assignment]
    # outermost: the public documents are answered before ProxyFix and Flask (sso/precomputed.py)
    app.wsgi_app = PrecomputedResponses(flask_app, services.documents, accounting)  # type: ignore[method-assign]
    return app
