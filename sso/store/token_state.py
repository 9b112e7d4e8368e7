"""Revocation state of access tokens, kept in their session record (RFC 7009 §2.1).

An access token's ``jti`` is ``<family id>.<n>``. It is revoked when its own
mark ``j:<jti>`` (its ``exp``, dropped once passed) is there, or when its
family's field ``f:<fid>`` is gone while the session-wide mark ``y`` (the
latest ``exp`` of the access tokens of every family the session has ended,
only ever raised) lies in the future. That is exact: family ids are unique
random values, a family's field is gone only once the family was ended or has
expired, and no access token outlives its family (its ``exp`` is clamped to the
family's expiry), so a live token of an absent family is one of an ended
family and ``y`` covers it. Everything vanishes with the session, when every
token of it is dead anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sso.store.layout import Keys
from sso.store.runner import ReplicaTimeout, Runner

MARKS_PER_SESSION = 64
# A family last written before checkpoints existed (sso/store/lua/lib.lua) does not say which of its
# access tokens may be alive: its event names its last LEGACY_WINDOW, as many as a client refreshing
# every 3.5 s mints in the default 15-minute lifetime. Within one access-token lifetime of the upgrade.
LEGACY_WINDOW = 256


def family_of(jti: str) -> str:
    return jti.split(".", 1)[0]


@dataclass(frozen=True)
class Revoked:
    """Access tokens revoked while their session lives on: what a tokens-revoked event names."""

    user_id: str
    sid: str
    jtis: tuple[str, ...]
    expires_at: int


def family_revoked(
    user_id: str, sid: str, fid: str, latest_exp: int, minted: int, alive_from: int, now: int
) -> Revoked | None:
    """The access tokens of an ended family that may not have expired (None when all have): from the
    index its checkpoints give, every one of them however many (the event carrying them is split,
    ``TokenService.announce``); the last LEGACY_WINDOW when unknown (-1: a record of the previous
    version)."""
    if latest_exp <= now or minted <= 0:
        return None
    start = alive_from if alive_from >= 0 else minted - LEGACY_WINDOW
    jtis = tuple(f"{fid}.{i}" for i in range(max(0, start), minted))
    return Revoked(user_id, sid, jtis, latest_exp)


class TokenState:
    def __init__(self, runner: Runner, keys: Keys) -> None:
        self.runner = runner
        self.keys = keys

    def access_token_state(self, jti: str, user_id: str, sid: str, now: float) -> tuple[bool, dict[str, str] | None]:
        """(revoked at ``now``, the session's ``expires_at`` and ``claims`` or None): one HMGET,
        whose size does not depend on how many families the session has ended."""
        record = self.keys.user_session(user_id, sid)
        if record is None:
            return False, None
        fid = family_of(jti)
        # x:<fid>: the per-family mark a store before the session-wide 'y' wrote. Read until every
        # such mark has expired (one SSO_ACCESS_TOKEN_TTL after the upgrade), so none comes back.
        owner, expires_at, claims, family, ended_until, token_mark, legacy_mark = cast(
            list[str | None],
            self.runner.client.hmget(
                record, ["user_id", "expires_at", "claims", f"f:{fid}", "y", f"j:{jti}", f"x:{fid}"]
            ),
        )
        if owner != user_id or expires_at is None:
            return False, None
        family_ended = family is None and ended_until is not None and int(ended_until) > now
        revoked = token_mark is not None or family_ended or legacy_mark is not None
        return revoked, {"expires_at": expires_at, "claims": claims or ""}

    def revoke_access(self, jti: str, user_id: str, sid: str, exp: int, now: int) -> Revoked | None:
        """Deny one access token until ``exp`` (past the bound: its family); acknowledged by a replica.
        What was revoked, or None when the session has ended (its tokens are dead already)."""
        record = self.keys.user_session(user_id, sid)
        if record is None or exp <= now:
            return None

        def parse(r: list[Any]) -> Revoked | None:
            if int(r[0]) == 0:
                return None
            if int(r[0]) == 2:
                family = family_revoked(user_id, sid, family_of(jti), int(r[1]), int(r[2]), int(r[3]), now)
                if family is not None:
                    return Revoked(user_id, sid, tuple(dict.fromkeys((jti, *family.jtis))), max(exp, family.expires_at))
            return Revoked(user_id, sid, (jti,), exp)

        args: list[str | int] = [family_of(jti), jti, exp, now, MARKS_PER_SESSION]
        try:
            return parse(self.runner.run_acknowledged("revoke_access", [record], args))
        except ReplicaTimeout as exc:  # marked on the primary all the same
            exc.result = parse(exc.result)
            raise
