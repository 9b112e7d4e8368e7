"""The floor, the scale curves and Cluster against one server: what ``make bench`` adds to its table.

* **The floor** (bench/floor_app.py): fixed bytes under deploy/gunicorn.conf.py's
  settings, measured in the same passes, by the same load generator and the
  same CPU accounting as the scenarios, so each endpoint reads as a multiple
  of what the stack costs before any application code runs.
* **Scale** (``--scale``): CPU per operation of /session/validate and the
  refresh grant at concurrency 16 with 10 k, 100 k and 1 M live sessions in
  Redis (one service and Redis per size, side by side, measured in
  alternating passes), Redis ``used_memory`` per session at each step, and the per-user
  operations (list, invalidate-all) for users with 1, 10 and 100 sessions.
  Redis is filled directly: the store's own ``create_session`` script, EVALSHA
  on a raw pipelined socket, for sessions whose id hash is the SHA-256 of a
  real token, in the user's bucket, at most ``SSO_MAX_SESSIONS_PER_USER`` per
  user. The operations run on sessions of the fill (validate: a random
  sample; refresh: chains started by /authorize with a filled session's
  token), so the filled sessions are ones the service accepts.
* **Cluster** (``--cluster``): validate and refresh with the service on the
  suite's 3-primary Redis Cluster (tests/topologies.py, one replica each) and on
  one server, started side by side and measured in alternating passes. The
  cluster's CPU is that of all six redis-server processes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import load, probes
from bench.load import Op, Unexpected
from bench.scenarios import CLAIMS, SCENARIOS, Fixture, OpFactory, Target, authorize_and_exchange, expect, fetch
from bench.scenarios import refresh as refresh_op
from bench.scenarios import validate as validate_op
from sso.digests import b64url
from sso.store.layout import Keys, user_bucket
from sso.store.scripts import source
from tests.redis_server import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
SETTLE = 0.3  # seconds after a run before CPU is read: background writes (events, activity) land within it
PER_USER = 10  # sessions per user in the scale fill (the cap is 100; real users hold a few)
CAP = 100  # SSO_MAX_SESSIONS_PER_USER's default, which the benchmark's service runs with
SESSION_TTL = 2592000  # SSO_SESSION_TTL's default
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128"  # 43 characters, as in README's sizing
SAMPLE = 20_000  # filled sessions kept (token, sid) for the measured operations
MEMORY_SHARE = 0.6  # of the machine's available memory the fill may take


# -- processes and their CPU ----------------------------------------------------------


@dataclass
class Deployed:
    """A gunicorn (master + workers) and the redis-server processes behind it, whose CPU is counted."""

    target: Target
    master: int
    redis_pids: tuple[int, ...] = ()
    fixtures: list[Fixture] = field(default_factory=list)


def cpu_now(d: Deployed) -> probes.CpuSnapshot:
    return probes.cpu_snapshot(d.master, d.redis_pids)


@dataclass
class Measured:
    result: load.LoadResult
    cpu_ms: float  # per op: gunicorn + every redis-server counted
    redis_ms: float


def measure(
    d: Deployed, make_op: OpFactory, *, connections: int, ops: int, seconds: float, settle: float = SETTLE
) -> Measured:
    """One bounded closed-loop run and the server-side CPU it caused, per operation."""
    from bench.run import run_load  # bench.run imports this module

    before = cpu_now(d)
    result = run_load(d.target.address, make_op, connections=connections, max_ops=ops, seconds=seconds)
    time.sleep(settle)
    after = cpu_now(d)
    if after.workers != before.workers:
        result.errors += 1
        result.reasons[f"workers changed: {before.workers} -> {after.workers}"] += 1
    n = max(1, result.ops)
    server, redis_cpu = after.gunicorn - before.gunicorn, after.redis - before.redis
    return Measured(result, (server + redis_cpu) / n * 1000, redis_cpu / n * 1000)


@dataclass
class Series:
    """Repeated runs of one thing: the median CPU/op and every run's result."""

    runs: list[Measured] = field(default_factory=list)

    @property
    def cpu_ms(self) -> float:
        return statistics.median(m.cpu_ms for m in self.runs) if self.runs else float("nan")

    @property
    def redis_ms(self) -> float:
        return statistics.median(m.redis_ms for m in self.runs) if self.runs else float("nan")

    @property
    def best(self) -> float:
        return min(m.cpu_ms for m in self.runs) if self.runs else float("nan")

    @property
    def span(self) -> str:
        cpu = [m.cpu_ms for m in self.runs]
        return f"{min(cpu):.2f}–{max(cpu):.2f}" if cpu else "—"

    @property
    def total(self) -> load.LoadResult:
        return load.merge([m.result for m in self.runs])

    def add(self, m: Measured, label: str) -> None:
        self.runs.append(m)
        res = m.result
        print(f"  {label}: {res.ops} ops, {res.errors} errors, {m.cpu_ms:.3f} ms CPU/op", file=sys.stderr, flush=True)
        for reason, count in res.reasons.most_common(3):
            print(f"    {count} x {reason}", file=sys.stderr)


# -- the floor --------------------------------------------------------------------------


@contextmanager
def floor_server(workers: int) -> Iterator[Deployed]:
    """bench/floor_app.py under bench/floor_gunicorn.conf.py (the deployed settings), on a free port."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SSO_")}, "SSO_PORT": str(port),
           "SSO_WORKERS": str(workers), "SSO_ENV_FILE": "/nonexistent/.env"}  # fmt: skip
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [gunicorn, "-c", "bench/floor_gunicorn.conf.py", "bench.floor_app:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        target = Target(("127.0.0.1", port), "")
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the floor's gunicorn exited: {log.read().decode(errors='replace')}")
                try:
                    target.call(fetch(target, "/"))
                except (OSError, Unexpected, load.ConnectionLost):
                    return False
                return len(probes.children(proc.pid)) == workers

            wait_for(up, timeout=30, what="the floor's gunicorn to answer", interval=0.1)
            yield Deployed(target, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def floor_op(d: Deployed) -> OpFactory:
    return lambda i: fetch(d.target, "/")


# -- filling Redis ------------------------------------------------------------------------


def _resp(args: Sequence[bytes]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)


OK_REPLY = b"*2\r\n$2\r\nok\r\n$0\r\n\r\n"  # create_session's {'ok', ''} in RESP2


@dataclass
class Filled:
    """What a fill made: how many sessions, and a sample of (token, sid) of them."""

    sessions: int = 0
    sample: list[tuple[str, str]] = field(default_factory=list)
    users: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # when kept: user -> (token, sid)


class Filler:
    """Creates real sessions with the store's ``create_session`` script, EVALSHA pipelined on a raw socket.

    A session token is 32 random bytes (base64url, 43 characters) and its id is
    SHA-256 of it; the store needs the id's first byte to be the user's bucket.
    Rather than draw tokens per user (256 draws each, as the service does), the
    filler draws tokens once and gives each to a user of its bucket with room
    left: one SHA-256 per session.
    """

    BATCH = 2000

    def __init__(self, port: int, keys: Keys) -> None:
        self.port = port
        self.keys = keys
        with redis.Redis(port=port) as client:
            self.sha = str(client.script_load(source("create_session")))
        self.run_id = secrets.token_hex(3)
        self.claims = json.dumps(CLAIMS, separators=(",", ":")).encode()

    def fill(self, users: int, per_user: int, *, keep_users: bool = False, sample: int = 0) -> Filled:
        """``per_user`` sessions for each of ``users`` new users (so users x per_user sessions)."""
        assert per_user <= CAP
        run = f"{self.run_id}-{secrets.token_hex(2)}"
        by_bucket: dict[int, list[str]] = {}
        for i in range(users):
            user = f"scale-{run}-{i}"
            by_bucket.setdefault(user_bucket(user), []).append(user)
        room: dict[int, list[tuple[str, list[int]]]] = {b: [(u, [per_user]) for u in us] for b, us in by_bucket.items()}
        left = users * per_user
        out = Filled()
        now = int(time.time())
        ttl = str(SESSION_TTL).encode()
        fixed = [str(now).encode(), str(now + SESSION_TTL).encode(), ttl, b"203.0.113.7", USER_AGENT.encode(),
                 b"web", self.claims, str(CAP).encode(), ttl, str(now).encode(), b"0"]  # fmt: skip
        keep_every = max(1, left // sample) if sample else 0
        sha, encode, sha1 = hashlib.sha256, base64.urlsafe_b64encode, self.sha.encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            batch: list[bytes] = []
            pending = 0  # replies not read yet, of batches sent
            while left:
                blob = os.urandom(32 * 512)
                for start in range(0, len(blob), 32):
                    token = encode(blob[start : start + 32])[:43]
                    digest = sha(token).digest()
                    slots = room.get(digest[0])
                    if not slots:
                        continue
                    user, remaining = slots[-1]
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        slots.pop()
                    sid = b64url(digest)
                    record = self.keys.session(sid)
                    assert record is not None
                    ukey = self.keys.index(user)
                    mark = self.keys.request(digest[0], "fill")
                    rec = record.encode()
                    head = [b"EVALSHA", sha1, b"3", rec, ukey.encode(), mark.encode(), sid.encode(), user.encode()]
                    batch.append(_resp([*head, *fixed]))
                    left -= 1
                    out.sessions += 1
                    pair = (token.decode(), sid)
                    if keep_users:
                        out.users.setdefault(user, []).append(pair)
                    if keep_every and out.sessions % keep_every == 0:
                        out.sample.append(pair)
                    if len(batch) == self.BATCH or not left:
                        sock.sendall(b"".join(batch))
                        if pending:
                            self._replies(sock, pending)
                        pending = len(batch)
                        batch = []
                    if not left:
                        break
            if pending:
                self._replies(sock, pending)
        return out

    @staticmethod
    def _replies(sock: socket.socket, count: int) -> None:
        want = len(OK_REPLY) * count
        got = bytearray()
        while len(got) < want:
            chunk = sock.recv(min(1 << 20, want - len(got)))
            if not chunk:
                raise RuntimeError("redis closed the connection during the fill")
            got += chunk
            if not OK_REPLY.startswith(bytes(got[: len(OK_REPLY)])):
                break
        if bytes(got) != OK_REPLY * count:
            first = next(i for i in range(0, len(got), len(OK_REPLY)) if got[i : i + len(OK_REPLY)] != OK_REPLY)
            raise RuntimeError(f"create_session did not answer ok: {bytes(got[first : first + 200])!r}")


def used_memory(port: int) -> int:
    with redis.Redis(port=port) as client:
        return int(client.info("memory")["used_memory"])


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# -- operations on filled sessions ---------------------------------------------------------


def validate_filled(t: Target, sample: list[tuple[str, str]]) -> OpFactory:
    sids = [sid for _, sid in sample]
    random.shuffle(sids)
    turn = iter(range(10**12))
    return lambda i: validate_op(t, sids[next(turn) % len(sids)])


def refresh_filled(t: Target, sample: list[tuple[str, str]], connections: int) -> OpFactory:
    """Each connection rotates its own chain, started by /authorize with a filled session's token."""
    picked = random.sample(sample, connections)
    chains = [[t.call(authorize_and_exchange(t, token))["refresh_token"]] for token, _ in picked]
    return lambda i: refresh_op(t, chains[i])


def list_user(t: Target, user: str, count: int) -> Op:
    headers = {"Authorization": f"Service {t.secret}"}
    reply = expect((yield t.get(f"/session/list/{user}", headers)), 200)
    if len(json.loads(reply.body)["sessions"]) != count:
        raise Unexpected(f"listed {len(json.loads(reply.body)['sessions'])} sessions, not {count}")


def invalidate_all(t: Target, user: str, count: int) -> Op:
    body = json.dumps({"user_id": user}).encode()
    reply = expect((yield t.post("/session/invalidate-all", body, "application/json", service=True)), 200)
    if len(json.loads(reply.body)["invalidated"]) != count:
        raise Unexpected(f"invalidated {len(json.loads(reply.body)['invalidated'])} sessions, not {count}")


# -- scale ------------------------------------------------------------------------------------


@dataclass
class Step:
    sessions: int  # live sessions in Redis while measured (the fill's, plus the few fixtures)
    bytes_per_session: float
    validate: Series = field(default_factory=Series)
    refresh: Series = field(default_factory=Series)


@dataclass
class PerUser:
    sessions: int  # of the user
    listing: Series = field(default_factory=Series)
    invalidate_all: Series = field(default_factory=Series)


@dataclass
class ScaleReport:
    steps: list[Step] = field(default_factory=list)
    per_user: list[PerUser] = field(default_factory=list)
    note: str = ""
    memory: str = ""  # what the largest step took, against what the machine had
    fill_seconds: float = 0.0
    background: int = 0  # live sessions present during the per-user measurements
    per_user_ops: int = 0


def scale(
    services: Sequence[tuple[Deployed, int]], keys: Keys, wanted: Sequence[int], args: argparse.Namespace, rounds: int
) -> ScaleReport:
    """One service per size in ``wanted`` (its Redis on the given port) filled to that size, then measured
    at c=16 in alternating passes: a burst of load from elsewhere lands in one pass of every size, not in
    every pass of one."""
    ops, seconds = args.scale_ops, args.seconds
    report = ScaleReport()
    started = time.monotonic()
    filled_at: list[tuple[Deployed, int, Filler, list[tuple[str, str]], Step]] = []
    per = 0.0
    for (d, port), size in zip(services, wanted, strict=True):
        if per:  # how much fits, from what the sessions of the smaller steps take
            fits = int(available_memory() * MEMORY_SHARE / per)
            if fits < size:
                size = fits // 1000 * 1000
                report.note = (f"{wanted[-1]:,} sessions do not fit in {MEMORY_SHARE:.0%} of this machine's available "
                               f"memory; the last step stops at {size:,}")  # fmt: skip
                print(f"  {report.note}", file=sys.stderr)
                if size <= filled_at[-1][4].sessions:
                    break
        base = used_memory(port)
        filler = Filler(port, keys)
        t0 = time.monotonic()
        filled = filler.fill(-(-size // PER_USER), PER_USER, sample=SAMPLE)
        report.fill_seconds += time.monotonic() - t0
        print(f"  filled {filled.sessions:,} sessions ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
        time.sleep(0.5)  # let the allocator's figures settle
        taken = used_memory(port) - base
        per = taken / filled.sessions
        report.memory = (f"{filled.sessions:,} sessions took {taken / 2**20:,.0f} MiB of Redis used_memory; "
                         f"{available_memory() / 2**30:.1f} GiB of memory were still available")  # fmt: skip
        filled_at.append((d, port, filler, filled.sample, Step(filled.sessions, per)))
    for d, _, _, sample, _ in filled_at:
        load_ops(d, validate_filled(d.target, sample), min(ops, 2000))
    for n in range(rounds):
        for d, _, _, sample, step in filled_at:
            label = f"{step.sessions:,} sessions, pass {n + 1}"
            step.validate.add(measure(d, validate_filled(d.target, sample), connections=16, ops=ops,
                                      seconds=seconds), f"{label}: validate x16")  # fmt: skip
            step.refresh.add(measure(d, refresh_filled(d.target, sample, 16), connections=16, ops=ops,
                                     seconds=seconds), f"{label}: refresh x16")  # fmt: skip
    report.steps = [step for *_, step in filled_at]
    d, _, filler, _, largest = filled_at[-1]
    report.background = largest.sessions
    report.per_user = per_user_ops(d, filler, args, args.repeats)
    report.per_user_ops = args.per_user_ops
    print(f"  scale done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return report


def load_ops(d: Deployed, make_op: OpFactory, ops: int) -> None:
    from bench.run import run_load

    run_load(d.target.address, make_op, connections=16, max_ops=ops, seconds=5)


def per_user_ops(d: Deployed, filler: Filler, args: argparse.Namespace, rounds: int) -> list[PerUser]:
    """List and invalidate-all for users holding 1, 10 and 100 sessions (100: the cap)."""
    ops, seconds = args.per_user_ops, args.seconds
    out = []
    for count in (1, 10, CAP):
        # invalidate-all ends its user's sessions: a fresh user for every operation of every round
        users = filler.fill(ops * rounds + 16, count, keep_users=True).users
        names = list(users)
        row = PerUser(count)
        load_ops(d, _listing(d.target, names, count), min(ops, 200))
        for n in range(rounds):
            m = measure(d, _listing(d.target, names, count), connections=16, ops=ops, seconds=seconds)
            row.listing.add(m, f"user with {count}, pass {n + 1}: list x16")
        for n in range(rounds):
            # each run is a forked child: it takes its own slice of users, not a shared iterator
            m = measure(d, _ending(d.target, names[n * ops : (n + 1) * ops], count), connections=16, ops=ops,
                        seconds=seconds)  # fmt: skip
            row.invalidate_all.add(m, f"user with {count}, pass {n + 1}: invalidate-all x16")
        out.append(row)
    return out


def _listing(t: Target, names: list[str], count: int) -> OpFactory:
    turn = iter(range(10**12))
    return lambda i: list_user(t, names[next(turn) % len(names)], count)


def _ending(t: Target, names: list[str], count: int) -> OpFactory:
    victims = iter(names)
    return lambda i: invalidate_all(t, next(victims), count)


def _ratio(values: Sequence[float]) -> float:
    return max(values) / min(values) if values and min(values) > 0 else float("nan")


def _verdict(ratio: float, target: float) -> str:
    return "yes" if ratio <= target else "no"


def render_scale(r: ScaleReport) -> list[str]:
    out = ["", "### Scale: live sessions in Redis (concurrency 16)", ""]
    out.append("One service (gunicorn + its own redis-server) per step, all running side by side, measured in "
               "alternating passes. Each Redis filled directly with the store's create_session script "
               f"({PER_USER} sessions per user, a "
               f"{len(USER_AGENT)}-character user agent, two claims, no refresh family; {r.fill_seconds:.0f} s in "
               "all); validate on a random sample of the filled sessions, refresh on chains started with filled "
               "sessions' tokens. CPU/op = gunicorn + redis-server, median of the passes (range).")  # fmt: skip
    if r.note:
        out += ["", f"**Note: {r.note}.**"]
    if r.memory:
        out += ["", f"Memory: {r.memory}."]
    out += ["", "| live sessions | validate CPU ms/op (range) | of which Redis | errors | refresh CPU ms/op (range) "
                "| of which Redis | errors | Redis used_memory per session |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for s in r.steps:
        val, ref = s.validate, s.refresh
        out.append(f"| {s.sessions:,} | {val.cpu_ms:.3f} ({val.span}) | {val.redis_ms:.3f} | {val.total.errors} "
                   f"| {ref.cpu_ms:.3f} ({ref.span}) | {ref.redis_ms:.3f} | {ref.total.errors} "
                   f"| {s.bytes_per_session:,.0f} B |")  # fmt: skip
    if len(r.steps) > 1:
        v, f = _ratio([s.validate.cpu_ms for s in r.steps]), _ratio([s.refresh.cpu_ms for s in r.steps])
        m = _ratio([s.bytes_per_session for s in r.steps])
        best_v, best_f = _ratio([s.validate.best for s in r.steps]), _ratio([s.refresh.best for s in r.steps])
        redis_v, redis_f = _ratio([s.validate.redis_ms for s in r.steps]), _ratio([s.refresh.redis_ms for s in r.steps])
        out += ["", f"Flatness, largest / smallest step (target ≤ 1.10): validate **{v:.2f}** ({_verdict(v, 1.10)}), "
                    f"refresh **{f:.2f}** ({_verdict(f, 1.10)}), memory per session {m:.2f}. The same from each "
                    f"step's best run (less exposed to load from elsewhere): validate {best_v:.2f}, refresh "
                    f"{best_f:.2f}; Redis's own CPU/op alone: validate {redis_v:.2f}, "
                    f"refresh {redis_f:.2f}."]  # fmt: skip
    if r.per_user:
        out += ["", f"Per-user operations, concurrency 16, with {r.background:,} other live sessions in Redis "
                    f"(invalidate-all: a fresh user for every operation; up to {r.per_user_ops} ops a pass):", "",
                "| sessions of the user | list CPU ms/op (range) | of which Redis | errors "
                "| invalidate-all CPU ms/op (range) | of which Redis | errors |",
                "|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
        for p in r.per_user:
            out.append(f"| {p.sessions} | {p.listing.cpu_ms:.3f} ({p.listing.span}) | {p.listing.redis_ms:.3f} "
                       f"| {p.listing.total.errors} | {p.invalidate_all.cpu_ms:.3f} ({p.invalidate_all.span}) "
                       f"| {p.invalidate_all.redis_ms:.3f} | {p.invalidate_all.total.errors} |")  # fmt: skip
        if len(r.per_user) > 1:
            a, b = r.per_user[0], r.per_user[-1]
            n = b.sessions - a.sessions
            listing = (b.listing.cpu_ms - a.listing.cpu_ms) / n * 1000
            ending = (b.invalidate_all.cpu_ms - a.invalidate_all.cpu_ms) / n * 1000
            out += ["", f"Per extra session of the user: list +{listing:.1f} µs, invalidate-all +{ending:.1f} µs "
                        f"(from {a.sessions} to {b.sessions} sessions)."]  # fmt: skip
    return out


def scale_errors(r: ScaleReport) -> int:
    series = [x for s in r.steps for x in (s.validate, s.refresh)]
    series += [x for p in r.per_user for x in (p.listing, p.invalidate_all)]
    return sum(x.total.errors for x in series)


# -- Cluster against one server ---------------------------------------------------------------


@dataclass
class ClusterReport:
    single: dict[str, Series] = field(default_factory=dict)
    cluster: dict[str, Series] = field(default_factory=dict)
    primaries_share: float = 0.0  # of the cluster's redis CPU, what the three primaries used


def cluster_compare(single: Deployed, cluster: Deployed, primary_pids: Sequence[int], args: argparse.Namespace,
                    rounds: int) -> ClusterReport:  # fmt: skip
    """validate and refresh (the table's scenarios, on the fixtures) on both, in alternating passes."""
    ops, seconds = args.ops, args.seconds
    scenarios = [s for s in SCENARIOS if s.name in ("session/validate", "refresh grant")]
    report = ClusterReport()
    primaries_cpu = replicas_cpu = 0.0
    for d in (single, cluster):
        for s in scenarios:
            load_ops(d, s.prepare(d.target, d.fixtures), min(ops, 400))
    for n in range(rounds):
        for s in scenarios:
            for name, d, into in (("one server", single, report.single), ("cluster", cluster, report.cluster)):
                make_op = s.prepare(d.target, d.fixtures)
                p0 = sum(probes.cpu_seconds(p) for p in primary_pids) if d is cluster else 0.0
                r0 = cpu_now(d).redis
                m = measure(d, make_op, connections=16, ops=ops, seconds=seconds)
                if d is cluster:
                    p1, r1 = sum(probes.cpu_seconds(p) for p in primary_pids), cpu_now(d).redis
                    primaries_cpu += p1 - p0
                    replicas_cpu += (r1 - r0) - (p1 - p0)
                into.setdefault(s.name, Series()).add(m, f"{name}, pass {n + 1}: {s.name} x16")
    report.primaries_share = primaries_cpu / max(1e-9, primaries_cpu + replicas_cpu)
    return report


def render_cluster(r: ClusterReport) -> list[str]:
    out = ["", "### Redis Cluster (3 primaries, 1 replica each) against one redis-server (concurrency 16)", "",
           "Both services started side by side, measured in alternating passes, each on its own 16 fixture "
           "sessions. Cluster CPU counts all six redis-server processes (replicas included: a single server has "
           f"none to feed); the three primaries used {r.primaries_share:.0%} of the cluster's Redis CPU.", "",
           "| scenario | one server CPU ms/op (range) | of which Redis | cluster CPU ms/op (range) | of which Redis "
           "| errors | cluster / one server (target ≤ 1.25) |",
           "|---|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for name, one in r.single.items():
        many = r.cluster[name]
        if one.cpu_ms <= 0:  # a tiny run can read 0 CPU ticks
            verdict = "—"
        else:
            ratio = many.cpu_ms / one.cpu_ms
            verdict = f"**{ratio:.2f}** ({_verdict(ratio, 1.25)})"
        out.append(f"| {name} | {one.cpu_ms:.3f} ({one.span}) | {one.redis_ms:.3f} | {many.cpu_ms:.3f} ({many.span}) "
                   f"| {many.redis_ms:.3f} | {one.total.errors + many.total.errors} | {verdict} |")  # fmt: skip
    return out


def cluster_errors(r: ClusterReport) -> int:
    return sum(s.total.errors for s in (*r.single.values(), *r.cluster.values()))
