"""ServiceClient against the real service, and its retry rules against a scripted HTTP server."""

from __future__ import annotations

import logging
import socket
import time
import traceback

import pytest
from fluxer_sso_client import RateLimited, ServiceClient, ServiceError, ServiceUnavailable, session_id_hash
from harness import SERVICE_SECRET, RedisProcess, SSOServer


def test_session_endpoints_round_trip(service: ServiceClient, user: str) -> None:
    """create, validate, list, invalidate and invalidate-all through typed calls."""
    first = service.create_session(user, client_ip="203.0.113.7", platform="web", claims={"name": "Ada"})
    second = service.create_session(user)
    third = service.create_session(user)
    assert session_id_hash(first.token) == first.session_id_hash
    session = service.validate_session(first.session_id_hash)
    assert session is not None and session.user_id == user and session.platform == "web"
    assert service.validate_session("A" * 43) is None
    assert {s.session_id_hash for s in service.list_sessions(user)} == {
        first.session_id_hash, second.session_id_hash, third.session_id_hash}  # fmt: skip
    assert service.invalidate(user, [first.session_id_hash, "B" * 43]) == [first.session_id_hash]
    assert service.invalidate_all(user, except_session_id_hashes=[third.session_id_hash]) == [second.session_id_hash]
    assert [s.session_id_hash for s in service.list_sessions(user)] == [third.session_id_hash]


def test_introspection_tells_a_live_token_from_an_ended_session(sso: SSOServer, service: ServiceClient, user) -> None:
    """/introspect through the client: active, then inactive once the session is invalidated."""
    token, session = sso.access_token(user)
    assert service.introspect(token)["active"] is True
    service.invalidate(user, [session["session_id_hash"]])
    assert service.introspect(token) == {"active": False}


def test_session_status_is_batched_or_reported_missing(service: ServiceClient, user: str) -> None:
    """/session/status in batches of 100; a service without it answers ServiceError 404."""
    live = service.create_session(user).session_id_hash
    hashes = [live] + [f"{i:043d}" for i in range(150)]
    try:
        status = service.session_status(hashes)
    except ServiceError as exc:
        assert exc.status == 404
        pytest.skip("this service has no /session/status yet (another branch adds it)")
    assert status[live] is True and sum(status.values()) == 1 and len(status) == 151


def test_a_validation_error_is_a_service_error_with_its_code(service: ServiceClient) -> None:
    """A 400 from the service surfaces as ServiceError(invalid_request) naming the field."""
    with pytest.raises(ServiceError) as caught:
        service.create_session("not a valid user id!")
    assert (caught.value.status, caught.value.error) == (400, "invalid_request")
    assert "user_id" in caught.value.description


def test_the_secret_never_shows(sso: SSOServer, caplog) -> None:
    """Not in the client's repr, its exceptions, their tracebacks, or any log line, retries included."""
    wrong = "wrong-secret-that-must-not-leak-0123456789"
    client = ServiceClient(sso.url, wrong, retries=2, sleep=lambda _: None)
    dead = ServiceClient("http://127.0.0.1:9", SERVICE_SECRET, retries=2, sleep=lambda _: None)
    texts = [repr(client), str(client), repr(client._secret), str(client._secret)]
    with caplog.at_level(logging.DEBUG):
        for call in (lambda: client.validate_session("A" * 43), lambda: dead.validate_session("A" * 43)):
            with pytest.raises(ServiceError) as caught:
                call()
            texts += [str(caught.value), repr(caught.value), "".join(traceback.format_exception(caught.value))]
    assert caught.value.status == 503
    texts += [r.getMessage() for r in caplog.records]
    for text in texts:
        assert wrong not in text and SERVICE_SECRET not in text


def test_a_service_whose_redis_is_down_is_retried_then_unavailable(keys, user) -> None:
    """503 from the real service (Redis gone): retried with growing backoff, then ServiceUnavailable."""
    redis_server = RedisProcess()
    redis_server.start()
    server = SSOServer(redis_server.url, "down:", keys, workers=1)
    server.start()
    try:
        redis_server.kill()
        sleeps: list[float] = []
        client = ServiceClient(server.url, SERVICE_SECRET, retries=3, backoff=0.1, sleep=sleeps.append)
        with pytest.raises(ServiceUnavailable):
            client.validate_session("A" * 43)
        assert len(sleeps) == 3 and sleeps[0] < sleeps[2] <= 0.4
    finally:
        server.stop()
        redis_server.cleanup()


def test_failed_service_auth_is_rate_limited_with_retry_after(keys) -> None:
    """The real limiter's 429: a Retry-After above max_retry_after raises RateLimited carrying it."""
    redis_server = RedisProcess()
    redis_server.start()
    server = SSOServer(redis_server.url, "rl:", keys, workers=1, SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES="2/minute")
    server.start()
    try:
        client = ServiceClient(server.url, "x" * 40, sleep=lambda _: None)
        statuses = []
        for _ in range(4):
            try:
                client.list_sessions("42")
            except RateLimited as exc:
                statuses.append(429)
                assert 1 <= exc.retry_after <= 60
            except ServiceError as exc:
                statuses.append(exc.status)
        assert statuses[:2] == [401, 401] and statuses[-1] == 429
    finally:
        server.stop()
        redis_server.cleanup()


VALID = {"valid": False}


def test_a_503_then_success_is_one_call_to_the_caller(scripted) -> None:
    """Two 503s then 200: the caller sees the 200; the sleeps grew."""
    url, handler = scripted
    handler.answers[:] = [(503, {}, {"error": "temporarily_unavailable"})] * 2 + [(200, {}, VALID)]
    sleeps: list[float] = []
    assert ServiceClient(url, SERVICE_SECRET, backoff=0.1, sleep=sleeps.append).validate_session("A" * 43) is None
    assert len(handler.seen) == 3 and len(sleeps) == 2


def test_retry_after_is_honoured_once(scripted) -> None:
    """429 with Retry-After: 2 is waited out exactly, and the retry succeeds."""
    url, handler = scripted
    handler.answers[:] = [(429, {"Retry-After": "2"}, {"error": "rate_limited"}), (200, {}, VALID)]
    sleeps: list[float] = []
    ServiceClient(url, SERVICE_SECRET, sleep=sleeps.append).validate_session("A" * 43)
    assert sleeps == [2.0]


def test_a_second_429_or_a_long_retry_after_raises(scripted) -> None:
    """No waiting loop: a 429 after a 429, or Retry-After above max_retry_after, is RateLimited."""
    url, handler = scripted
    handler.answers[:] = [(429, {"Retry-After": "1"}, {})] * 2 + [(429, {"Retry-After": "600"}, {})]
    client = ServiceClient(url, SERVICE_SECRET, max_retry_after=10, sleep=lambda _: None)
    with pytest.raises(RateLimited):
        client.validate_session("A" * 43)
    with pytest.raises(RateLimited) as caught:
        client.validate_session("A" * 43)
    assert caught.value.retry_after == 600


def test_create_is_not_repeated_after_no_answer(scripted) -> None:
    """A create whose answer never came is not retried (it may have happened); validate is."""
    sleeps: list[float] = []
    client = ServiceClient("http://127.0.0.1:9", SERVICE_SECRET, retries=3, sleep=sleeps.append)
    with pytest.raises(ServiceUnavailable):
        client.create_session("42")
    assert sleeps == []
    with pytest.raises(ServiceUnavailable):
        client.validate_session("A" * 43)
    assert len(sleeps) == 3


def test_a_redirect_is_not_followed(scripted) -> None:
    """A 3xx never carries the secret elsewhere: it is an error."""
    url, handler = scripted
    handler.answers[:] = [(307, {"Location": "http://evil.test/"}, {})]
    with pytest.raises(ServiceError) as caught:
        ServiceClient(url, SERVICE_SECRET).validate_session("A" * 43)
    assert caught.value.status == 307


def test_a_silent_service_times_out_and_is_retried() -> None:
    """A service that accepts the connection and never answers costs timeout x attempts, then ServiceUnavailable."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
        sleeps: list[float] = []
        client = ServiceClient(f"http://127.0.0.1:{silent.getsockname()[1]}", SERVICE_SECRET, timeout=0.2,
                               retries=1, sleep=sleeps.append)  # fmt: skip
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="timed out"):
            client.list_sessions("42")
        elapsed = time.monotonic() - started
    assert len(sleeps) == 1 and 0.4 <= elapsed < 2.0, elapsed
