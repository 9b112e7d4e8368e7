"""RevocationList: entries last exactly as long as the tokens they cover, and memory is bounded."""

from __future__ import annotations

from fluxer_sso_client import RevocationList
from fluxer_sso_client.revocation import ExpiringSet
from local_tokens import Clock


def test_a_denied_session_is_forgotten_after_the_longest_token_lifetime() -> None:
    """deny_sessions(at) lasts at + max_token_lifetime + leeway, then the entry is gone."""
    clock = Clock()
    revocations = RevocationList(max_token_lifetime=900, leeway=30, clock=clock)
    revocations.deny_sessions(["s1"], at=clock.now)
    clock.now += 929
    assert revocations.is_denied("s1", "any")
    clock.now += 2
    assert not revocations.is_denied("s1", "any")
    revocations.deny_sessions(["s2"])  # an insert purges what expired
    assert len(revocations.sessions) == 1


def test_a_denied_jti_lasts_until_its_expires_at() -> None:
    """tokens-revoked entries live until expires_at plus the leeway."""
    clock = Clock()
    revocations = RevocationList(leeway=30, clock=clock)
    revocations.deny_tokens(["j1", "j2"], expires_at=clock.now + 100)
    assert revocations.is_denied("s", "j2")
    clock.now += 131
    assert not revocations.is_denied("s", "j1")


def test_the_set_never_holds_more_than_its_bound() -> None:
    """Past max_entries the soonest-expiring entry goes first, and the loss is counted."""
    clock = Clock()
    entries = ExpiringSet(max_entries=1000, clock=clock)
    for i in range(5000):
        entries.add(f"k{i}", clock.now + 10 + i)
    assert len(entries) == 1000 and entries.overflowed == 4000
    assert "k4999" in entries and "k0" not in entries
    assert len(entries._heap) <= 2 * 1000 + 16


def test_re_adding_extends_and_never_shortens() -> None:
    """A later expiry replaces an earlier one; an earlier one is ignored."""
    clock = Clock()
    entries = ExpiringSet(max_entries=10, clock=clock)
    entries.add("a", clock.now + 100)
    entries.add("a", clock.now + 10)
    clock.now += 50
    assert "a" in entries
    for _ in range(100):  # superseded heap pairs do not pile up
        entries.add("a", clock.now + 200)
        clock.now += 1
    assert len(entries._heap) <= 2 * 10 + 16
