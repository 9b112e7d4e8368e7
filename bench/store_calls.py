"""CPU per store call in this process: one server against a 3-primary cluster (issue 9's budget: ≤ 1.25×).

``python -m bench.store_calls`` starts a private redis-server and a 3+3
cluster on loopback (tests/topologies.py), and times, with
``time.process_time``, the client side of the calls on every hot path:
validate (one HMGET), introspection's token state (one HMGET), a refresh
rotation (one EVALSHA) and an activity batch (pipelined EVALSHA per node).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from config.redis_url import parse_redis_url
from sso.store import RedisStore
from sso.store.connections import connect
from tests.redis_server import RedisServer
from tests.topologies import Cluster

CALLS = 3000
FIELDS = {"client_ip": "203.0.113.9", "user_agent": "Fluxer/1.0", "platform": "web", "claims": "{}"}


def per_call(work: Callable[[int], object], calls: int = CALLS) -> float:
    """Microseconds of this process's CPU per call, the median of three passes."""
    passes = []
    for _ in range(3):
        started = time.process_time()
        for i in range(calls):
            work(i)
        passes.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(passes)


def measure(url: str) -> dict[str, float]:
    client = connect(parse_redis_url(url), timeout=5)
    store = RedisStore(client, "bench:")
    now = int(time.time())
    sids = []
    for n in range(200):
        _, sid = store.new_session_token(f"u{n}")
        store.create_session(sid, f"u{n}", now, now + 3600, FIELDS)
        sids.append((f"u{n}", sid))
    user, sid = sids[0]
    code = store.issue_code(sid=sid, binding={"sid": sid}, clock=now, fresh_login=False, max_age=None,
                            auth_after=None, ttl=60).code  # fmt: skip
    redeemed = store.redeem_code(code, user_id=user, sid=sid, client_id="fluxer", scope="openid", now=now,
                                 expires_at=now + 3600, access_expires_at=now + 900, keep=900)  # fmt: skip
    token = [redeemed.refresh_token]

    def rotate(_: int) -> None:
        token[0] = store.rotate_refresh(token[0], now=now, grace=0, client_id="fluxer", scope="",
                                        access_expires_at=now + 900).successor  # fmt: skip

    results = {
        "validate (HMGET)": per_call(lambda i: store.find_session(sids[i % 200][1])),
        "token state (HMGET)": per_call(lambda i: store.access_token_state(redeemed.jti, user, sid, now)),
        "refresh rotation (EVALSHA)": per_call(rotate),
        "activity batch of 50, per mark": per_call(
            lambda i: store.touch_many([(u, s, now + i + 1) for u, s in sids[:50]], interval=0), 100
        )
        / 50,
    }
    for key in client.scan_iter(match="bench:*"):
        client.delete(key)
    client.close()
    return results


def main() -> None:
    single, cluster = RedisServer(), Cluster(node_timeout_ms=5000)
    single.start()
    cluster.start()
    try:
        one, many = measure(single.url), measure(cluster.url)
    finally:
        single.cleanup()
        cluster.cleanup()
    print("| store call | one server, µs CPU | cluster (3 primaries), µs CPU | cluster / one |")
    print("|---|---:|---:|---:|")
    for name in one:
        print(f"| {name} | {one[name]:.0f} | {many[name]:.0f} | {many[name] / one[name]:.2f} |")


if __name__ == "__main__":
    main()
