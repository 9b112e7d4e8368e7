"""The key layout: every key of one user lives in one of 256 buckets, one hash slot each.

Redis Cluster runs a script only when every key it declares hashes to one
slot, so each atomic change must touch keys of one bucket only. A user's
bucket is the first byte of SHA-256(user id); each bucket has a hash tag
chosen so the 256 buckets fall into 256 equal bands of the 16 384 slots, and
therefore spread evenly over the primaries however the slots are split.

Everything a request can start from names its bucket without a lookup:

* a session token is drawn until SHA-256(token), the session id hash, starts
  with the user's bucket byte (248 bits of entropy remain), so
  ``/session/validate`` finds the record from the hash alone;
* an authorization code starts with its bucket byte;
* a refresh token carries its session id hash, its family id, its generation
  and a MAC (see ``RefreshToken``);
* an access token carries ``sid``, and its ``jti`` is ``<family id>.<n>``, so
  its revocation state sits in the session record.

Key names (``P`` is ``SSO_REDIS_PREFIX``, ``T`` the bucket's tag)::

    P{T}:s:<sid>    hash    the session record, its refresh families (``f:<fid>``) and the
                            revocation marks of its access tokens (``y``, ``j:<jti>``)
    P{T}:u:<user>   zset    the user's sessions, sid -> last activity (listing, eviction)
    P{T}:c:<hash>   hash    an authorization code (SHA-256 of the code), 60 s
    P{T}:r:<id>     string  the answer of one invalidation request, for its retry, 60 s
    Prl:<limit>:<window>:<addr>   string  failures in one rate window
    Pevent-log      stream  the durable event log (sso/store/eventlog.py)
    Pevent-log:r:{Pevent-log}<id>  string  the ids one append call wrote, for its retry, 60 s (the log's slot)
    Phealth         string  written by /_health to prove a write lands, 10 s
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
from dataclasses import dataclass

from redis.crc import key_slot

from sso.digests import b64url

BUCKETS = 256
SLOTS = 16384
BAND = SLOTS // BUCKETS
REFRESH_VERSION = 1
FAMILY_ID_BYTES = 9
_REFRESH = struct.Struct(">B32s9sI20s")


def compute_bucket_tags() -> tuple[str, ...]:
    """For bucket ``b``, the first decimal string (counting up from 0) whose slot lies in band ``b``.

    Deterministic, so every worker and instance agrees; ``BUCKET_TAGS`` is its
    result, written out because pure-Python CRC16 takes most of a second
    (tests/test_store_layout.py checks the two agree).
    """
    tags: list[str | None] = [None] * BUCKETS
    missing, candidate = BUCKETS, 0
    while missing:
        text = str(candidate)
        band = key_slot(text.encode()) // BAND
        if tags[band] is None:
            tags[band] = text
            missing -= 1
        candidate += 1
    return tuple(t for t in tags if t is not None)


# fmt: off
BUCKET_TAGS: tuple[str, ...] = (
    "460", "14", "278", "10", "274", "100", "270", "18", "113", "267", "117", "263", "346", "473", "342", "477",
    "131", "245", "29", "241", "25", "451", "21", "249", "3", "36", "7", "32", "256", "122", "252", "126",
    "201", "69", "205", "171", "209", "61", "411", "65", "72", "406", "76", "402", "166", "212", "162", "216",
    "50", "238", "54", "420", "58", "230", "140", "234", "223", "157", "227", "153", "437", "43", "433", "47",
    "461", "15", "279", "11", "275", "101", "271", "19", "112", "266", "116", "262", "347", "472", "343", "476",
    "130", "244", "28", "240", "24", "450", "20", "248", "2", "37", "6", "33", "257", "123", "253", "127",
    "200", "68", "204", "170", "208", "60", "410", "64", "73", "407", "77", "403", "167", "213", "163", "217",
    "51", "239", "55", "421", "59", "231", "141", "235", "222", "156", "226", "152", "436", "42", "432", "46",
    "16", "462", "12", "466", "102", "276", "106", "272", "265", "111", "261", "115", "471", "119", "269", "340",
    "247", "133", "243", "137", "453", "27", "457", "23", "34", "1", "30", "5", "120", "9", "38", "250",
    "177", "203", "173", "207", "63", "417", "67", "413", "218", "70", "400", "74", "210", "78", "214", "160",
    "426", "52", "422", "56", "232", "146", "236", "142", "49", "221", "151", "225", "41", "229", "45", "431",
    "17", "463", "13", "467", "103", "277", "107", "273", "264", "110", "260", "114", "470", "118", "268", "341",
    "246", "132", "242", "136", "452", "26", "456", "22", "35", "0", "31", "4", "121", "8", "39", "251",
    "176", "202", "172", "206", "62", "416", "66", "412", "219", "71", "401", "75", "211", "79", "215", "161",
    "427", "53", "423", "57", "233", "147", "237", "143", "48", "220", "150", "224", "40", "228", "44", "430",
)
# fmt: on


def user_bucket(user_id: str) -> int:
    return hashlib.sha256(user_id.encode()).digest()[0]


def sid_bucket(sid: str) -> int | None:
    """The bucket of a session id hash (43 base64url characters), None if it is not one."""
    raw = _b64decode(sid)
    return raw[0] if raw is not None and len(raw) == 32 else None


def _b64decode(text: str) -> bytes | None:
    if not text or len(text) > 600:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if b64url(raw) == text else None  # canonical encodings only


def draw_session_token(user_id: str) -> tuple[str, str]:
    """(token, its session id hash) with the hash in the user's bucket.

    256 draws on average (about 1 ms of CPU here); the token stays 32 random bytes.
    """
    want, sha256, encode = user_bucket(user_id), hashlib.sha256, base64.urlsafe_b64encode
    while True:
        blob = secrets.token_bytes(32 * 64)  # one call for 64 candidates
        for start in range(0, len(blob), 32):
            token = encode(blob[start : start + 32])[:43]  # base64url, padding dropped
            digest = sha256(token).digest()
            if digest[0] == want:
                return token.decode("ascii"), b64url(digest)


def new_code(bucket: int) -> str:
    """An authorization code: its bucket byte and 32 random bytes, base64url."""
    return b64url(bytes([bucket]) + secrets.token_bytes(32))


def code_bucket(code: str) -> int | None:
    raw = _b64decode(code)
    return raw[0] if raw is not None and len(raw) == 33 else None


def new_family_id() -> str:
    return b64url(secrets.token_bytes(FAMILY_ID_BYTES))


@dataclass(frozen=True)
class RefreshToken:
    """``base64url(version, sid, family id, generation, MAC)``.

    The MAC is HMAC-SHA1 under the family's own random key, computed by the
    store's scripts over ``"<sid>.<fid>.<gen>"``: the family keeps one counter
    and one key however often it rotates, yet a spent token of any earlier
    generation is recognised as reuse, and nobody who lacks the key can forge
    one (HMAC-SHA1 is a sound PRF; SHA-1's collisions do not touch it).
    """

    sid: str
    fid: str
    gen: int
    mac: str  # hex

    def encode(self) -> str:
        sid_raw = base64.urlsafe_b64decode(self.sid + "=")
        fid_raw = base64.urlsafe_b64decode(self.fid)
        return b64url(_REFRESH.pack(REFRESH_VERSION, sid_raw, fid_raw, self.gen, bytes.fromhex(self.mac)))

    @classmethod
    def parse(cls, token: str) -> RefreshToken | None:
        raw = _b64decode(token)
        if raw is None or len(raw) != _REFRESH.size:
            return None
        version, sid_raw, fid_raw, gen, mac = _REFRESH.unpack(raw)
        if version != REFRESH_VERSION:
            return None
        return cls(b64url(sid_raw), b64url(fid_raw), gen, mac.hex())

    @property
    def bucket(self) -> int:
        return base64.urlsafe_b64decode(self.sid + "=")[0]


class Keys:
    """Key builders for one prefix; the only place key names are spelled."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._bases = tuple(f"{prefix}{{{tag}}}:" for tag in BUCKET_TAGS)
        self.events_channel = f"{prefix}events"
        self.event_log = f"{prefix}event-log"
        self.health = f"{prefix}health"

    def base(self, bucket: int) -> str:
        return self._bases[bucket]

    def session(self, sid: str) -> str | None:
        """The record key of a session id hash, None for something that is not one."""
        bucket = sid_bucket(sid)
        return None if bucket is None else f"{self._bases[bucket]}s:{sid}"

    def user_session(self, user_id: str, sid: str) -> str | None:
        """The record key, only when ``sid`` can belong to ``user_id`` (the same bucket)."""
        bucket = sid_bucket(sid)
        if bucket is None or bucket != user_bucket(user_id):
            return None
        return f"{self._bases[bucket]}s:{sid}"

    def indexed_sessions(self, user_id: str, sids: list[str]) -> list[str]:
        """The record keys of the sids in a user's index, named in the user's bucket without decoding
        each (the index holds only sids of that bucket; any other name is still a key of its slot)."""
        base = f"{self._bases[user_bucket(user_id)]}s:"
        return [base + sid for sid in sids]

    def index(self, user_id: str) -> str:
        return f"{self._bases[user_bucket(user_id)]}u:{user_id}"

    def code(self, bucket: int, code_hash: str) -> str:
        return f"{self._bases[bucket]}c:{code_hash}"

    def request(self, bucket: int, request_id: str) -> str:
        return f"{self._bases[bucket]}r:{request_id}"

    def event_log_call(self, call_id: str) -> str:
        """Under the prefix like every key, and in the event log's slot: the log's whole name is the
        hash tag (a prefix holds no braces, so the log's own slot is that of its whole name)."""
        return f"{self.event_log}:r:{{{self.event_log}}}{call_id}"

    def rate(self, limit: str, window: int, address: str) -> str:
        return f"{self.prefix}rl:{limit}:{window}:{address}"
