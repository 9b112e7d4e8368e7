"""JWKSCache: honours Cache-Control, refetches on an unknown kid at most once per interval."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from fluxer_sso_client import JWKSCache
from fluxer_sso_client.errors import VerificationUnavailable
from fluxer_sso_client.jwks import max_age
from harness import SSOServer, rsa_pem_pair
from local_tokens import PUBLIC, Clock, jwk_set

_, NEXT_PUBLIC = rsa_pem_pair()


class Service:
    """What the JWKS endpoint answers, and how often it was asked."""

    def __init__(self, document: dict[str, Any], cache_control: str = "public, max-age=300") -> None:
        self.document = document
        self.cache_control = cache_control
        self.calls = 0
        self.down = False
        self.lock = threading.Lock()

    def __call__(self, url: str) -> tuple[dict[str, Any], str]:
        with self.lock:
            self.calls += 1
        if self.down:
            raise OSError("connection refused")
        return self.document, self.cache_control


def test_the_real_service_jwks_is_loaded_for_its_max_age(sso: SSOServer) -> None:
    """The JWKS from gunicorn parses to RS256 keys, cached exactly as long as its Cache-Control says."""
    seconds = max_age(requests.get(f"{sso.url}/.well-known/jwks.json", timeout=5).headers["Cache-Control"], 0)
    assert seconds >= 60
    clock = Clock()
    cache = JWKSCache(f"{sso.url}/.well-known/jwks.json", clock=clock, max_cache=86400)
    cache.refresh()
    kid = cache.kids[0]
    clock.now += seconds - 1
    assert cache.get(kid) is not None and cache.fetches == 1  # still fresh
    clock.now += 2
    assert cache.get(kid) is not None and cache.fetches == 2  # stale: refetched


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("public, max-age=300", 300), ("max-age=60, must-revalidate", 60), ("no-store", 0), ("private", 7), ("", 7)],
)
def test_max_age_is_read_from_cache_control(header: str, seconds: float) -> None:
    """RFC 9111 max-age, no-store/no-cache as zero, the default otherwise."""
    assert max_age(header, default=7) == seconds


def test_the_set_is_refetched_when_its_max_age_ends() -> None:
    """Within max-age no request; after it, the next lookup refetches."""
    clock, service = Clock(), Service(jwk_set(PUBLIC), "max-age=120")
    cache = JWKSCache("u", fetch=service, clock=clock)
    assert cache.get("k0") is not None and service.calls == 1
    clock.now += 119
    cache.get("k0")
    assert service.calls == 1
    clock.now += 2
    cache.get("k0")
    assert service.calls == 2


def test_a_max_age_below_the_floor_is_raised_to_it() -> None:
    """no-store does not make every lookup a request: min_refresh bounds the rate."""
    clock, service = Clock(), Service(jwk_set(PUBLIC), "no-store")
    cache = JWKSCache("u", fetch=service, clock=clock, min_refresh=30)
    for _ in range(100):
        cache.get("k0")
    assert service.calls == 1


def test_forged_kids_cost_one_fetch_per_interval_under_concurrency() -> None:
    """200 concurrent lookups of random kids: one refetch, not 200 (no thundering herd)."""
    clock, service = Clock(), Service(jwk_set(PUBLIC))
    cache = JWKSCache("u", fetch=service, clock=clock, min_refresh=30)
    cache.refresh()
    assert cache.get("forged-right-after-a-fetch") is None and service.calls == 1
    clock.now += 31
    with ThreadPoolExecutor(16) as pool:
        assert not any(pool.map(lambda i: cache.get(f"forged-{i}"), range(200)))
    assert service.calls == 2
    clock.now += 31
    assert cache.get("forged-again") is None and service.calls == 3


def test_a_rotated_in_key_is_found_by_refetching_on_its_kid() -> None:
    """Several keys at once: a token signed by a newly published key verifies without waiting for max-age."""
    clock, service = Clock(), Service(jwk_set(PUBLIC))
    cache = JWKSCache("u", fetch=service, clock=clock, min_refresh=30)
    cache.refresh()
    clock.now += 31
    service.document = jwk_set(PUBLIC, NEXT_PUBLIC)  # k0 and k1 published together
    assert cache.get("k1") is not None and cache.get("k0") is not None
    assert cache.kids == ("k0", "k1")


def test_the_last_good_set_is_kept_while_the_service_is_down() -> None:
    """Stale-if-error: a failed refetch keeps the known keys working."""
    clock, service = Clock(), Service(jwk_set(PUBLIC), "max-age=60")
    cache = JWKSCache("u", fetch=service, clock=clock)
    cache.refresh()
    service.down = True
    clock.now += 3600
    assert cache.get("k0") is not None
    assert service.calls == 2


def test_a_cold_start_outage_is_unavailable_then_recovers() -> None:
    """No set ever loaded: VerificationUnavailable, retried every 2 s, fine once the service answers."""
    clock, service = Clock(), Service(jwk_set(PUBLIC))
    service.down = True
    cache = JWKSCache("u", fetch=service, clock=clock, min_refresh=30)
    with pytest.raises(VerificationUnavailable):
        cache.get("k0")
    service.down = False
    clock.now += 2
    assert cache.get("k0") is not None
