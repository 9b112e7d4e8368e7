"""Revocation state of access tokens, kept in their session record (RFC 7009 §2.1).

An access token's ``jti`` is ``<family id>.<n>``: the mark ``x:<fid>`` says
"every token of that family", ``j:<jti>`` one token. Both carry the latest
``exp`` they cover and are dropped once it has passed; both vanish with the
session, when every token of it is dead anyway.
"""

from __future__ import annotations

from typing import cast

from sso.store.layout import Keys
from sso.store.runner import Runner

MARKS_PER_SESSION = 64


def family_of(jti: str) -> str:
    return jti.split(".", 1)[0]


class TokenState:
    def __init__(self, runner: Runner, keys: Keys) -> None:
        self.runner = runner
        self.keys = keys

    def access_token_state(self, jti: str, user_id: str, sid: str) -> tuple[bool, dict[str, str] | None]:
        """(revoked, the session's ``expires_at`` and ``claims`` or None): one HMGET."""
        record = self.keys.user_session(user_id, sid)
        if record is None:
            return False, None
        owner, expires_at, claims, family_mark, token_mark = cast(
            list[str | None],
            self.runner.client.hmget(record, ["user_id", "expires_at", "claims", f"x:{family_of(jti)}", f"j:{jti}"]),
        )
        if owner != user_id or expires_at is None:
            return False, None
        return family_mark is not None or token_mark is not None, {"expires_at": expires_at, "claims": claims or ""}

    def revoke_access(self, jti: str, sid: str, exp: int, now: int) -> int:
        """Deny one access token until ``exp``; acknowledged by a replica. See revoke_access.lua."""
        record = self.keys.session(sid)
        if record is None or exp <= now:
            return 0
        return int(
            self.runner.run_acknowledged("revoke_access", [record], [family_of(jti), jti, exp, now, MARKS_PER_SESSION])
        )
