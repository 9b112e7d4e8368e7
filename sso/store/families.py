"""Refresh-token families (RFC 6749 §6, RFC 9700 §4.14), kept inside their session record.

A family is one field of the session record: its client, scope, generation
counter, MAC key and expiry. Rotation bumps the counter; a presented token is
the current one when its generation equals the counter and its MAC is right,
and a spent one when its generation is lower — so reuse is recognised for the
family's whole life while what it stores never grows (SPEC: bounded state).
Ending the session ends every family in it, in the same DEL.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sso.store.layout import Keys, RefreshToken
from sso.store.runner import ReplicaTimeout, Runner
from sso.store.token_state import Revoked, family_revoked


@dataclass(frozen=True)
class Rotation:
    """What the rotation script decided for a presented refresh token."""

    outcome: str  # ok | grace | reuse | invalid | scope
    user_id: str = ""
    sid: str = ""
    scope: str = ""
    session_expires_at: int = 0
    auth_time: int = 0
    last_active_at: int = 0
    claims: str = ""
    family_expires_at: int = 0
    successor: str = ""
    jti: str = ""
    family_id: str = ""
    revoked: Revoked | None = None  # on reuse: the family's access tokens still alive


@dataclass(frozen=True)
class RefreshInfo:
    user_id: str
    sid: str
    client_id: str
    scope: str
    expires_at: int
    issued_at: int
    family_id: str


class Families:
    def __init__(self, runner: Runner, keys: Keys) -> None:
        self.runner = runner
        self.keys = keys

    def _parse(self, token: str) -> tuple[RefreshToken, str] | None:
        parsed = RefreshToken.parse(token)
        record = self.keys.session(parsed.sid) if parsed else None
        return (parsed, record) if parsed and record else None

    def rotate(
        self, presented: str, *, now: int, grace: int, client_id: str, scope: str, access_expires_at: int
    ) -> Rotation:
        """One atomic script: rotate, replay within grace, or end the family on reuse (a spent token
        with a valid MAC, whatever ``client_id`` and ``scope`` say)."""
        found = self._parse(presented)
        if found is None:
            return Rotation("invalid")
        token, record = found
        r = self.runner.run(
            "rotate_refresh",
            [record],
            [token.sid, token.fid, token.gen, token.mac, now, grace, client_id, scope, secrets.token_hex(12),
             access_expires_at],
        )  # fmt: skip
        if r[0] in ("ok", "grace"):
            return Rotation(
                outcome=r[0],
                user_id=r[1],
                sid=token.sid,
                scope=r[2],
                session_expires_at=int(r[3]),
                auth_time=int(r[4]),
                last_active_at=int(r[5] or 0),
                claims=r[6],
                family_expires_at=int(r[7]),
                successor=RefreshToken(token.sid, token.fid, int(r[8]), r[9]).encode(),
                jti=r[10],
                family_id=token.fid,
            )
        if r[0] == "reuse":
            revoked = family_revoked(r[1], token.sid, token.fid, int(r[2]), int(r[3]), int(r[4]), now)
            return Rotation(outcome="reuse", user_id=r[1], sid=token.sid, family_id=token.fid, revoked=revoked)
        return Rotation(outcome=r[0], family_id=token.fid)

    def revoke(self, presented: str, client_id: str | None, now: int) -> tuple[int, Revoked | None]:
        """(1 revoked, 0 unknown, -1 owned by another client and left alive; the family's access
        tokens still alive); acknowledged by a replica."""
        found = self._parse(presented)
        if found is None:
            return 0, None
        token, record = found

        def parse(r: list[Any]) -> tuple[int, Revoked | None]:
            if int(r[0]) != 1:
                return int(r[0]), None
            return 1, family_revoked(r[1], token.sid, token.fid, int(r[2]), int(r[3]), int(r[4]), now)

        try:
            return parse(
                self.runner.run_acknowledged(
                    "revoke_refresh", [record], [token.sid, token.fid, token.gen, token.mac, client_id or "", now]
                )
            )
        except ReplicaTimeout as exc:  # revoked on the primary all the same
            exc.result = parse(exc.result)
            raise

    def inspect(self, presented: str, now: int) -> RefreshInfo | None:
        found = self._parse(presented)
        if found is None:
            return None
        token, record = found
        r = self.runner.run("inspect_refresh", [record], [token.sid, token.fid, token.gen, token.mac, now])
        if not r:
            return None
        return RefreshInfo(
            user_id=r[0],
            sid=token.sid,
            client_id=r[1],
            scope=r[2],
            expires_at=int(r[3]),
            issued_at=int(r[4]),
            family_id=token.fid,
        )
