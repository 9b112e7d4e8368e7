"""The key layout of the first version, for ``sso purge-legacy`` after an upgrade.

Its sessions cannot be carried into the bucket layout: a session's id is the
hash of a token only its client holds, and it would have to start with the
user's bucket byte. An upgrade therefore signs everybody in again (README,
"Upgrading"); these keys all carry TTLs (at most the session lifetime), and
this module deletes them at once instead of leaving them to expire.
"""

from __future__ import annotations

from collections.abc import Iterator

from redis.cluster import RedisCluster

from sso.store.runner import Client

# The first version's keys (P = prefix): P{user}:session:<sid>, P{user}:sessions,
# P{user}:families:<sid>, P{user}:family:<fid>, P{user}:jtis:<fid>, Psid:, Prt:, Pcode:, Pjti:.
_PATTERNS = ("{*}:session:*", "{*}:sessions", "{*}:families:*", "{*}:family:*", "{*}:jtis:*",
             "sid:*", "rt:*", "code:*", "jti:*")  # fmt: skip
BATCH = 500


def legacy_keys(client: Client, prefix: str) -> Iterator[str]:
    """Every key of the old layout under ``prefix``, on every primary."""
    nodes = (
        [client.get_redis_connection(node) for node in client.get_primaries()]
        if isinstance(client, RedisCluster)
        else [client]
    )
    for node in nodes:
        for pattern in _PATTERNS:
            yield from node.scan_iter(match=f"{prefix}{pattern}", count=1000)


def purge_legacy(client: Client, prefix: str, *, dry_run: bool = False) -> int:
    """Delete (UNLINK, in batches) the old layout's keys; how many there were."""
    count, batch = 0, []
    for key in legacy_keys(client, prefix):
        count += 1
        if not dry_run:
            batch.append(key)
            if len(batch) == BATCH:
                _unlink(client, batch)
                batch = []
    if batch:
        _unlink(client, batch)
    return count


def _unlink(client: Client, keys: list[str]) -> None:
    for key in keys:  # one key per call: old keys of different users sit in different slots
        client.unlink(key)
