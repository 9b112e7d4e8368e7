"""The outage policy (docs/integrating.md): what verification does while the service or Redis is away."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib
from fluxer_sso_client import EventListener, FluxerSSO, JWKSCache, TokenError, TokenVerifier
from fluxer_sso_client.errors import VerificationUnavailable
from harness import ISSUER, RedisProcess, SSOServer, wait_for
from local_tokens import Clock, mint


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    yield server
    server.cleanup()


def test_redis_down_keeps_verifying_with_the_revocations_known(private_redis, local, clock: Clock) -> None:
    """Default policy: signatures still verify, what was revoked stays refused, lag grows; no 503."""
    client = redis_lib.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=1)
    lst = EventListener(client, prefix="o:", revocations=local.revocations, clock=clock, backoff=0.05)
    lst.run_once(timeout=0)
    lst.revocations.deny_sessions(["R" * 43], at=clock.now)
    private_redis.kill()
    lst.start()
    try:
        wait_for(lambda: not lst.connected, timeout=10, what="the listener to notice Redis is gone")
        clock.now += 600
        assert lst.lag >= 600
        lst.health()  # fail_closed_after is None: no opinion
        assert local.verify(mint(clock)).sub == "42"
        with pytest.raises(TokenError, match="revoked"):
            local.verify(mint(clock, sid="R" * 43))
    finally:
        lst.stop()
        client.close()


def test_the_service_down_keeps_verifying_from_the_cached_keys(keys, user) -> None:
    """Keys loaded, then the service stops: its tokens still verify; an unknown kid is 401, not 503."""
    redis_server = RedisProcess()
    redis_server.start()
    server = SSOServer(redis_server.url, "svc:", keys, workers=1)
    server.start()
    try:
        token, _ = server.access_token(user)
        jwks = JWKSCache(f"{server.url}/.well-known/jwks.json", min_refresh=0)
        verifier = TokenVerifier(issuer=ISSUER, audience="fluxer-api", jwks=jwks)
        verifier.verify(token)
        server.stop()
        assert verifier.verify(token).sub == user
        with pytest.raises(TokenError, match="unknown signing key"):
            verifier.verify(mint(Clock(), kid="rotated-in-while-down"))
        assert jwks.fetches == 2  # it did try the service for that kid
    finally:
        server.stop()
        redis_server.cleanup()


def test_strict_mode_answers_503_once_blind_too_long(private_redis, sso: SSOServer, user: str) -> None:
    """FluxerSSO(fail_closed_after=…): with Redis gone that long, verification is VerificationUnavailable."""
    sso_client = FluxerSSO(issuer=ISSUER, service_url=sso.url, service_secret="x" * 40,
                           redis_url=private_redis.url, fail_closed_after=0.2, backoff=0.05)  # fmt: skip
    token, _ = sso.access_token(user)
    sso_client.start()
    try:
        wait_for(lambda: sso_client.listener.connected, timeout=5, what="the listener to connect")
        assert sso_client.verify(token).sub == user
        private_redis.kill()
        wait_for(lambda: sso_client.listener.lag > 0.2, timeout=10, what="the allowance to run out")
        with pytest.raises(VerificationUnavailable):
            sso_client.verify(token)
        private_redis.start()
        wait_for(lambda: sso_client.listener.connected, timeout=10, what="the listener to catch up")
        assert sso_client.verify(token).sub == user
    finally:
        sso_client.stop()
