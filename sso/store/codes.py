"""Authorization codes (RFC 6749 §4.1.2): stored hashed in the bucket of their session.

A code starts with its bucket byte, so redeeming it needs no lookup; its
record lives 60 s and, once used, keeps what its redemption issued so that a
second redemption can revoke it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from sso.digests import token_hash
from sso.store.layout import Keys, RefreshToken, code_bucket, new_code, new_family_id, sid_bucket
from sso.store.runner import Runner
from sso.store.token_state import Revoked, family_revoked

FAMILIES_PER_SESSION = 32


@dataclass(frozen=True)
class CodeIssue:
    """What issuing decided: ok (stored), stale (a fresh login is needed) or none (no live session)."""

    outcome: str
    code: str = ""
    user_id: str = ""
    last_active_at: int = 0


@dataclass(frozen=True)
class Redemption:
    """What redeeming decided: ok | missing | ended | used (a replay: ``revoked_family`` ended)."""

    outcome: str
    refresh_token: str = ""
    jti: str = ""
    session_expires_at: int = 0
    auth_time: int = 0
    family_expires_at: int = 0
    revoked_family: str = ""  # the replay's victim, or the oldest family ended for the cap
    revoked: Revoked | None = None  # that family's access tokens still alive


class Codes:
    def __init__(self, runner: Runner, keys: Keys) -> None:
        self.runner = runner
        self.keys = keys

    def key(self, code: str) -> str | None:
        bucket = code_bucket(code)
        return None if bucket is None else self.keys.code(bucket, token_hash(code))

    def issue(
        self,
        *,
        sid: str,
        binding: dict[str, Any],
        clock: float,
        fresh_login: bool,
        max_age: int | None,
        auth_after: int | None,
        ttl: int,
        user_id: str | None = None,
    ) -> CodeIssue:
        """Check the session and store a new code bound to it, in one script (one round trip).

        Stored only when the session is alive at ``clock`` and no fresh login is
        needed: not ``fresh_login`` (prompt=login), not created more than
        ``max_age`` seconds ago, not before ``auth_after``, and, given ``user_id``,
        the session is that user's. The stored binding gains the session's
        ``user_id`` and ``auth_time``.
        """
        record, bucket = self.keys.session(sid), sid_bucket(sid)
        if record is None or bucket is None:
            return CodeIssue("none")
        code = new_code(bucket)
        r = self.runner.run(
            "issue_code",
            [record, self.keys.code(bucket, token_hash(code))],
            [
                clock,
                "1" if fresh_login else "0",
                "" if max_age is None else max_age,
                "" if auth_after is None else auth_after,
                json.dumps(binding, separators=(",", ":")),
                ttl,
                user_id or "",
            ],
        )
        if r[0] == "ok":
            return CodeIssue("ok", code=code, user_id=r[1], last_active_at=int(r[2] or 0))
        return CodeIssue(r[0])

    def read(self, code: str) -> dict[str, Any] | None:
        """What a code is bound to, without using it up."""
        key = self.key(code)
        data = self.runner.client.hget(key, "data") if key else None
        return json.loads(data) if data else None

    def burn(self, code: str, keep: int) -> None:
        """Use a code up without issuing anything (its bindings did not match)."""
        key = self.key(code)
        if key:
            self.runner.run("burn_code", [key], [keep])

    def redeem(
        self,
        code: str,
        *,
        user_id: str,
        sid: str,
        client_id: str,
        scope: str,
        now: int,
        expires_at: int,
        access_expires_at: int,
        keep: int,
    ) -> Redemption:
        """Mark the code used and start its refresh family in one script.

        The family's MAC key is drawn here and lives only in the family record;
        the refresh token of generation 0 and the access token's jti
        (``<fid>.0``) come back with the answer. The store records that token's exp as
        min(``access_expires_at``, the session's expiry, the family's expiry): mint it so.
        """
        key, record = self.key(code), self.keys.session(sid)
        if key is None or record is None:
            return Redemption("missing")
        fid = new_family_id()
        marker = json.dumps({"fid": fid, "x": access_expires_at}, separators=(",", ":"))
        r = self.runner.run(
            "redeem_code",
            [key, record],
            [marker, keep, now, fid, sid, client_id, scope, expires_at, secrets.token_hex(20), access_expires_at,
             FAMILIES_PER_SESSION],
        )  # fmt: skip
        if r[0] == "used":
            revoked = family_revoked(user_id, sid, r[1], int(r[2]), int(r[3]), int(r[4]), now) if r[1] else None
            return Redemption("used", revoked_family=r[1], revoked=revoked)
        if r[0] != "ok":
            return Redemption(r[0])
        return Redemption(
            "ok",
            refresh_token=RefreshToken(sid, fid, 0, r[4]).encode(),
            jti=f"{fid}.0",
            session_expires_at=int(r[1]),
            auth_time=int(r[2]),
            family_expires_at=int(r[3]),
            revoked_family=r[5],
            revoked=family_revoked(user_id, sid, r[5], int(r[6]), int(r[7]), int(r[8]), now) if r[5] else None,
        )
