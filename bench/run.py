"""``make bench``: Fluxer SSO as deployed, under load, and what each request costs.

The service runs exactly as in production — ``gunicorn -c deploy/gunicorn.conf.py
wsgi:app``, gevent workers, configured only through environment variables,
with freshly generated keys — against its own throw-away redis-server on a
free port (never your Redis). A closed-loop load generator (bench/load.py) in
a forked child process drives each scenario at concurrency 1 and 16, bounded
in operations and seconds.

For every scenario the table shows throughput, latency, errors (any answer a
healthy service would not give), server CPU per operation (utime + stime of
the gunicorn master, its workers and the redis-server, from /proc, before and
after the run), that CPU as a multiple of one RS256 signature measured in the
same run with the project's own ``KeySet``, worker RSS, Redis commands per
operation (INFO commandstats deltas, commands inside Lua scripts included),
the same split into what the service sends and what runs inside scripts (a
separate, untimed MONITOR pass, since MONITOR slows Redis down), and the
activity writes the run caused (sessions are made stale before each run, so
the debouncer has exactly one write per session to let through).

``python -m bench.run --help`` lists the knobs; ``make bench-smoke`` is the
tiny mode the test suite uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import multiprocessing
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path

import redis

from app import create_app
from bench import inproc, load, probes, scale
from bench import profile as profiling
from bench.scenarios import APP_ORIGIN, SCENARIOS, Fixture, OpFactory, Scenario, Target, make_fixtures
from config.keygen import generate_key_pair
from config.settings import load_settings
from sso.keys import KeySet
from sso.logs import json_handler
from sso.store import RedisStore
from tests.redis_server import RedisServer, redis_server_binary
from tests.server import GunicornServer
from tests.topologies import Cluster

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2
CONCURRENCY = (1, 16)
ACTIVITY_INTERVAL = 300  # the default SSO_ACTIVITY_UPDATE_INTERVAL
PROBLEM_MARKS = ('"level":"error"', '"level":"critical"', "Traceback", "[ERROR]", "[CRITICAL]")
QUIET = 0.2  # seconds after a run without activity writes to wait for (events go out at once)
ISSUER = "http://sso.bench"


# -- the RS256 yardstick -------------------------------------------------------------


@dataclass(frozen=True)
class Yardstick:
    sign_ms: float  # KeySet.sign on typical access-token claims
    raw_sign_ms: float  # cryptography's RSA sign alone: the floor under python-jose
    verify_ms: float  # KeySet.verify of an access token it has not seen (its cache of checked tokens cleared)
    cached_verify_ms: float  # KeySet.verify of the same token again


def measure_signing(private_pem: str, public_pem: str, iterations: int) -> Yardstick:
    """CPU of one signature with the project's own key objects, by time.process_time."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    keys = KeySet(private_pem, [public_pem])
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "1234567890123456789", "aud": "fluxer-api", "client_id": "fluxer",
              "scope": "openid profile email", "sid": secrets.token_urlsafe(32), "iat": now, "exp": now + 900,
              "jti": secrets.token_urlsafe(16)}  # fmt: skip
    token = keys.sign(claims, "at+jwt")
    raw = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(raw, rsa.RSAPrivateKey)
    signing_input = token.rsplit(".", 1)[0].encode()

    def cost(fn: Callable[[], object]) -> float:
        """The median of seven batches: other processes on a small machine make single batches noisy."""
        for _ in range(max(3, iterations // 20)):  # warm up
            fn()
        batches = []
        for _ in range(7):
            start = time.process_time()
            for _ in range(max(1, iterations // 7)):
                fn()
            batches.append((time.process_time() - start) / max(1, iterations // 7) * 1000)
        return statistics.median(batches)

    def verify() -> None:
        keys.verify(token, typ="at+jwt", audience="fluxer-api", issuer=ISSUER, now=time.time())

    return Yardstick(
        sign_ms=cost(lambda: keys.sign(claims, "at+jwt")),
        raw_sign_ms=cost(lambda: raw.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())),
        verify_ms=cost(lambda: (keys._checked.cache_clear(), verify())),
        cached_verify_ms=cost(verify),
    )


# -- the service under test ---------------------------------------------------------


@dataclass
class Service:
    redis_server: RedisServer
    gunicorn: GunicornServer
    redis: redis.Redis
    store: RedisStore
    target: Target
    env: dict[str, str]
    fixtures: list[Fixture] = field(default_factory=list)

    @property
    def master(self) -> int:
        assert self.gunicorn.proc is not None
        return self.gunicorn.proc.pid

    @property
    def redis_pid(self) -> int:
        assert self.redis_server.proc is not None
        return self.redis_server.proc.pid


def service_env(private_pem: str, public_pem: str, secret: str, redis_url: str) -> dict[str, str]:
    """The service's whole configuration, as environment variables (the same for every topology)."""
    return {
        "SSO_JWT_PRIVATE_KEY": private_pem,
        "SSO_JWT_PUBLIC_KEY": public_pem,
        "SSO_SERVICE_SECRET": secret,
        "REDIS_URL": redis_url,
        "SSO_ISSUER": ISSUER,
        "SSO_APP_ORIGINS": APP_ORIGIN,
        "SSO_CLIENTS": "fluxer",
        "SSO_LOGIN_URL": f"{APP_ORIGIN}/login",
        "SSO_ACTIVITY_UPDATE_INTERVAL": str(ACTIVITY_INTERVAL),
        "SSO_REFRESH_REUSE_GRACE": "0",
        "SSO_COOKIE_SECURE": "false",
    }


@contextmanager
def running_service(private_pem: str, public_pem: str) -> Iterator[Service]:
    secret = secrets.token_urlsafe(32)
    redis_server = RedisServer()
    redis_server.start()
    env = service_env(private_pem, public_pem, secret, redis_server.url)
    gunicorn = GunicornServer(env, workers=WORKERS)
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        gunicorn.start()
        target = Target(("127.0.0.1", gunicorn.port), secret)
        yield Service(redis_server, gunicorn, client, RedisStore(client), target, env)
    finally:
        client.close()
        gunicorn.stop()
        redis_server.cleanup()


@contextmanager
def running_on_cluster(private_pem: str, public_pem: str) -> Iterator[tuple[scale.Deployed, list[int], GunicornServer]]:
    """The same service on the suite's 3-primary Redis Cluster (tests/topologies.py), on loopback.

    Yields the service with all six redis-server processes counted, and the primaries' pids.
    """
    cluster = Cluster()
    cluster.start()
    secret = secrets.token_urlsafe(32)
    gunicorn = GunicornServer(service_env(private_pem, public_pem, secret, cluster.url), workers=WORKERS)
    try:
        gunicorn.start()
        assert gunicorn.proc is not None
        pids = {port: node.proc.pid for port, node in cluster.nodes.items() if node.proc is not None}
        primaries = [pids[shard.port] for shard in cluster.primaries()]
        target = Target(("127.0.0.1", gunicorn.port), secret)
        yield scale.Deployed(target, gunicorn.proc.pid, tuple(pids.values())), primaries, gunicorn
    finally:
        gunicorn.stop()
        cluster.cleanup()


def deployed(svc: Service) -> scale.Deployed:
    return scale.Deployed(svc.target, svc.master, (svc.redis_pid,), svc.fixtures)


# -- one run -----------------------------------------------------------------------


def _child(pipe: Connection, address: tuple[str, int], make_op: OpFactory, kwargs: dict[str, float]) -> None:
    before = time.process_time()
    result = load.run(address, make_op, **kwargs)  # type: ignore[arg-type]
    result.cpu_seconds = time.process_time() - before
    pipe.send(result)
    pipe.close()


def run_load(address: tuple[str, int], make_op: OpFactory, *, connections: int, max_ops: int, seconds: float):
    """The load generator in a forked child: its CPU never lands in the server's figures."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    kwargs = {"connections": connections, "max_ops": max_ops, "seconds": seconds, "grace": 10.0}
    child = ctx.Process(target=_child, args=(sender, address, make_op, kwargs), daemon=True)
    child.start()
    sender.close()
    if not receiver.poll(seconds + 30):
        child.kill()
        raise RuntimeError("the load generator did not finish")
    result: load.LoadResult = receiver.recv()
    child.join(10)
    return result


@dataclass
class Row:
    scenario: Scenario
    connections: int
    result: load.LoadResult
    cpu_ms: float  # per op: gunicorn + redis, the median of the repeats
    cpu_range: tuple[float, float]
    redis_cpu_ms: float
    rss_mb: tuple[float, ...]
    commands: float  # per op, INFO commandstats (script-internal commands included)
    evalsha: float
    activity: tuple[int, int] | None  # (writes, sessions) when the scenario marks activity
    other_cpu: float  # seconds the rest of the machine was busy meanwhile (not server, not load generator)
    app_ms: float = 0.0  # the WSGI app alone, in-process (bench/inproc.py)
    capture: str = ""


def backdate(svc: Service, fixtures: list[Fixture]) -> int:
    """Make the sessions' last activity older than the interval: one write each is then due."""
    stale = int(time.time()) - 2 * ACTIVITY_INTERVAL
    for f in fixtures:
        svc.redis.hset(svc.store.keys.session(f.sid), "last_active_at", stale)
    return stale


def activity_writes(svc: Service, fixtures: list[Fixture], stale: int) -> int:
    keys = [svc.store.keys.session(f.sid) for f in fixtures]
    return sum(int(svc.redis.hget(k, "last_active_at") or 0) != stale for k in keys)


@dataclass
class Sample:
    """One measured run of one scenario at one concurrency."""

    result: load.LoadResult
    cpu_ms: float  # per op: gunicorn + redis
    redis_ms: float
    other_cpu: float  # seconds the rest of the machine was busy meanwhile (not server, not load generator)
    commands: Counter[str]
    activity: tuple[int, int] | None  # (writes, sessions), measured on the last pass only


def measure(svc: Service, scenario: Scenario, connections: int, args: argparse.Namespace, *, last: bool) -> Sample:
    fixtures = svc.fixtures[:connections]
    make_op = scenario.prepare(svc.target, fixtures)  # outside the window: fresh refresh chains each run
    stale = backdate(svc, fixtures) if last and scenario.marks_activity else None
    cmd0, cpu0 = probes.commandstats(svc.redis), probes.cpu_snapshot(svc.master, [svc.redis_pid])
    result = run_load(svc.target.address, make_op, connections=connections, max_ops=args.ops, seconds=args.seconds)
    cpu1 = probes.cpu_snapshot(svc.master, [svc.redis_pid])
    time.sleep(
        args.settle if stale is not None else min(QUIET, args.settle)
    )  # background activity writes land within a second
    cmd1 = probes.commandstats(svc.redis)
    if cpu1.workers != cpu0.workers:
        result.errors += 1
        result.reasons[f"workers changed: {cpu0.workers} -> {cpu1.workers}"] += 1
    server, redis_cpu, ops = cpu1.gunicorn - cpu0.gunicorn, cpu1.redis - cpu0.redis, max(1, result.ops)
    return Sample(
        result=result,
        cpu_ms=(server + redis_cpu) / ops * 1000,
        redis_ms=redis_cpu / ops * 1000,
        other_cpu=(cpu1.machine - cpu0.machine) - server - redis_cpu - result.cpu_seconds,
        commands=cmd1 - cmd0,
        activity=None if stale is None else (activity_writes(svc, fixtures, stale), len(fixtures)),
    )


def row(svc: Service, scenario: Scenario, connections: int, samples: list[Sample]) -> Row:
    """The passes' samples of one scenario and concurrency as one table row: CPU/op is their median."""
    total = load.merge([s.result for s in samples])
    commands: Counter[str] = sum((s.commands for s in samples), Counter())
    cpu = [s.cpu_ms for s in samples]
    return Row(
        scenario=scenario,
        connections=connections,
        result=total,
        cpu_ms=statistics.median(cpu),
        cpu_range=(min(cpu), max(cpu)),
        redis_cpu_ms=statistics.median(s.redis_ms for s in samples),
        rss_mb=tuple(probes.rss_mb(p) for p in probes.children(svc.master)),
        commands=sum(commands.values()) / max(1, total.ops),
        evalsha=commands["evalsha"] / max(1, total.ops),
        activity=samples[-1].activity,
        other_cpu=sum(s.other_cpu for s in samples),
    )


def capture_commands(svc: Service, scenario: Scenario, args: argparse.Namespace) -> str:
    """An untimed pass under MONITOR: per operation, what the service sends and what runs in scripts."""
    make_op = scenario.prepare(svc.target, svc.fixtures[:1])
    monitor = probes.Monitor(svc.redis_server.port)
    result = run_load(svc.target.address, make_op, connections=1, max_ops=args.count_ops, seconds=30)
    time.sleep(min(QUIET, args.settle))
    capture = monitor.stop()
    ops = max(1, result.ops - result.errors)
    parts = [f"{_num(n / ops)} {name}" for name, n in capture.top_level.most_common()]
    in_scripts = sum(capture.in_scripts.values()) / ops
    text = ", ".join(parts) or "none"
    return text + (f" (+{_num(in_scripts)} in scripts)" if in_scripts else "")


def app_alone(svc: Service, scenario: Scenario, args: argparse.Namespace) -> float:
    """CPU per operation of the WSGI app called in this process, without gunicorn and gevent.

    Logging is set up as in the workers (JSON lines at INFO, so one access-log
    line per request), written to /dev/null.
    """
    app = create_app(load_settings({**svc.env, "REDIS_URL": svc.redis_server.url}))
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        with open(os.devnull, "w") as sink:
            root.handlers[:] = [json_handler(sink)]
            root.setLevel(logging.INFO)
            make_op = scenario.prepare(svc.target, svc.fixtures[:1])
            runs = [
                inproc.cpu_per_op(app, make_op, svc.target.host, ops=args.inproc_ops, seconds=args.seconds / 2)
                for _ in range(args.repeats)
            ]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        app.extensions["sso"].redis.close()
    return statistics.median(runs)


def soak(svc: Service, args: argparse.Namespace) -> list[tuple[int, tuple[float, ...]]]:
    """session/validate at concurrency 16; worker RSS at each checkpoint, within ``--soak-seconds``."""
    scenario = next(s for s in SCENARIOS if s.name == "session/validate")
    make_op = scenario.prepare(svc.target, svc.fixtures)
    points, done = [], 0
    deadline = time.monotonic() + args.soak_seconds
    for checkpoint in (args.soak // 10, args.soak // 4, args.soak // 2, args.soak):
        left = deadline - time.monotonic()
        if left <= 0:
            break  # a slow or busy machine: the report says how far the soak got
        result = run_load(svc.target.address, make_op, connections=16, max_ops=checkpoint - done, seconds=left)
        done += result.ops
        if result.errors:
            raise RuntimeError(f"soak errors: {dict(result.reasons)}")
        workers = probes.children(svc.master)
        points.append((done, tuple(probes.rss_mb(p) for p in workers)))
    return points


def profile(svc: Service, scenario: Scenario, args: argparse.Namespace) -> str:
    """Concurrency 16 under py-spy; the summary of where the workers' CPU went."""
    out = args.profile / scenario.name.replace("/", "-").replace(" ", "-").replace("(", "").replace(")", "")
    make_op = scenario.prepare(svc.target, svc.fixtures)
    workers = probes.children(svc.master)
    cpu0 = probes.cpu_snapshot(svc.master, [svc.redis_pid])
    samplers = profiling.record(workers, args.seconds, out)
    result = run_load(svc.target.address, make_op, connections=16, max_ops=10**9, seconds=args.seconds)
    cpu1 = probes.cpu_snapshot(svc.master, [svc.redis_pid])
    for sampler in samplers:
        sampler.wait(60)
    ms_per_op = (cpu1.gunicorn - cpu0.gunicorn) / max(1, result.ops) * 1000
    summary = profiling.summarise(sorted(out.glob("worker-*.txt")), ms_per_op)
    return f"### {scenario.name} ({result.ops} ops, {result.errors} errors)\n\n{summary}"


# -- the report ----------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 0.005 else f"{x:.2f}"


def _versions() -> str:
    names = ("Flask", "Werkzeug", "gunicorn", "gevent", "redis", "python-jose", "cryptography", "marshmallow")
    packages = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    binary = redis_server_binary() or "redis-server"
    server = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    redis_version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    return f"Python {platform.python_version()}, {packages}, {os.path.basename(binary)} {redis_version}"


def _commit() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", "sso", "app.py", "bench") else ""
    return (git("rev-parse", "--short", "HEAD") or "?") + dirty


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def _loadgen_ms(rows: list[Row]) -> float:
    return sum(r.result.cpu_seconds for r in rows) / max(1, sum(r.result.ops for r in rows)) * 1000


def _other_share(rows: list[Row]) -> float:
    return max(0.0, sum(r.other_cpu for r in rows)) / max(1e-9, sum(r.result.seconds for r in rows))


# The floor targets of the performance issue: CPU/op at c=16 as a multiple of the floor's.
FLOOR_TARGETS = {"discovery": 1.5, "jwks": 1.5, "session/validate": 2.0, "authorize (cookie)": 2.0}


def render_floor(rows: list[Row], floor: dict[int, scale.Series]) -> list[str]:
    """The floor's own rows, and the targeted endpoints as multiples of it."""
    out = ["", "### Against the floor", "",
           "The floor: bench/floor_app.py (fixed bytes, no application code, no log lines) under "
           "bench/floor_gunicorn.conf.py, which copies every plain setting of deploy/gunicorn.conf.py (gevent, "
           f"{WORKERS} workers, worker_connections, keepalive, timeouts); measured in the same passes, by the same "
           "load generator, with the same CPU accounting (gunicorn master + workers; it has no Redis).", "",
           "| floor | conc | ops | ops/s | p50 ms | p99 ms | errors | CPU ms/op (range) |",
           "|---|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for connections, series in floor.items():
        res = series.total
        out.append(f"| floor (fixed bytes) | {connections} | {res.ops} | {res.ops / max(res.seconds, 1e-9):.0f} "
                   f"| {res.percentile(0.50) * 1000:.2f} | {res.percentile(0.99) * 1000:.2f} | {res.errors} "
                   f"| {series.cpu_ms:.3f} ({series.span}) |")  # fmt: skip
    by = {(r.scenario.name, r.connections): r for r in rows}
    out += ["", "| endpoint | CPU ms/op, c=16 | × floor, c=16 | × floor, c=1 | target | met? |",
            "|---|--:|--:|--:|--:|---|"]  # fmt: skip
    for name, target in FLOOR_TARGETS.items():
        hot, one = by.get((name, 16)), by.get((name, 1))
        if hot is None or 16 not in floor or floor[16].cpu_ms <= 0:  # a tiny run can read 0 CPU ticks
            continue
        ratio = hot.cpu_ms / floor[16].cpu_ms
        low = floor[1].cpu_ms if 1 in floor else 0.0
        single = f"{one.cpu_ms / low:.2f}" if one is not None and low > 0 else "—"
        out.append(f"| {name} | {hot.cpu_ms:.3f} | **{ratio:.2f}** | {single} | ≤ {target:.1f} "
                   f"| {'yes' if ratio <= target else 'no'} |")  # fmt: skip
    return out


def render(
    rows: list[Row],
    yard: Yardstick,
    soak_points: list[tuple[int, tuple[float, ...]]],
    log: str,
    repeats: int,
    floor: dict[int, scale.Series] | None = None,
) -> str:
    floor = floor or {}
    out = [
        f"## Fluxer SSO benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}",
        "",
        f"- machine: {os.cpu_count()} cores ({_cpu_model()}), {platform.system()} {platform.release()}",
        f"- {_versions()}",
        f"- service: gunicorn -c deploy/gunicorn.conf.py wsgi:app, {WORKERS} gevent workers, private redis-server; "
        f"SSO_ACTIVITY_UPDATE_INTERVAL={ACTIVITY_INTERVAL}, SSO_REFRESH_REUSE_GRACE=0",
        f"- one RS256 signature (KeySet.sign, access-token claims): **{yard.sign_ms:.3f} ms CPU**; "
        f"RSA-2048 sign alone (cryptography): {yard.raw_sign_ms:.3f} ms; KeySet.verify: {yard.verify_ms:.3f} ms "
        f"({yard.cached_verify_ms:.3f} ms for a token it has checked before)",
        "- CPU/op = utime+stime of the gunicorn master, workers and redis-server per operation "
        f"(load generator excluded), the median of {repeats} runs in separate passes (their range in brackets); "
        "app alone = the same operations through the WSGI app in-process, without gunicorn and gevent "
        "(bench/inproc.py); Redis cmds/op from INFO commandstats, script-internal commands included",
        f"- load generator: {_loadgen_ms(rows):.3f} ms CPU/op on average (not counted); the rest of the machine was "
        f"busy {_other_share(rows):.0%} of one core during the measured runs (other processes: it skews latency "
        "and throughput, much less CPU/op)",
        "",
        "| scenario | conc | ops | ops/s | p50 ms | p99 ms | errors | CPU ms/op (range) | of which Redis "
        "| × RS256 | app alone ms/op | worker RSS MB | Redis cmds/op | per op, as Redis sees it (MONITOR pass) "
        "| activity writes | × floor |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|",
    ]
    for r in rows:
        res = r.result
        activity = "—" if r.activity is None else f"{r.activity[0]} for {r.activity[1]} sessions"
        base = floor.get(r.connections)
        times_floor = f"{r.cpu_ms / base.cpu_ms:.2f}" if base is not None and base.runs and base.cpu_ms > 0 else "—"
        out.append(
            f"| {r.scenario.name} | {r.connections} | {res.ops} | {res.ops / res.seconds:.0f} "
            f"| {res.percentile(0.50) * 1000:.2f} | {res.percentile(0.99) * 1000:.2f} | {res.errors} "
            f"| {r.cpu_ms:.3f} ({r.cpu_range[0]:.2f}–{r.cpu_range[1]:.2f}) | {r.redis_cpu_ms:.3f} "
            f"| {r.cpu_ms / yard.sign_ms:.2f} | {r.app_ms:.3f} "
            f"| {' / '.join(f'{m:.1f}' for m in r.rss_mb)} | {r.commands:.2f} | {r.capture} | {activity} "
            f"| {times_floor} |"
        )
    scenarios = dict.fromkeys(r.scenario for r in rows)
    out += ["", "One operation: " + "; ".join(f"**{s.name}**: {s.what}" for s in scenarios) + "."]
    if floor:
        out += render_floor(rows, floor)
    if soak_points:
        first, last = soak_points[0], soak_points[-1]
        trail = ", ".join(f"{n:,}: {' / '.join(f'{m:.1f}' for m in rss)}" for n, rss in soak_points)
        growth = max(b - a for a, b in zip(first[1], last[1], strict=False))
        out += ["", f"Memory soak (session/validate, 16 connections), worker RSS MB after N requests — {trail}; "
                    f"growth from {first[0]:,} to {last[0]:,} requests: {growth:+.1f} MB."]  # fmt: skip
    problems = [line for line in log.splitlines() if any(mark in line for mark in PROBLEM_MARKS)]
    access = log.count('"event":"request"')
    out += ["", f"Server log: {access} access-log lines (logging on, as deployed), {len(problems)} error lines."
            + (f" First: {problems[0][:200]}" if problems else "")]  # fmt: skip
    return "\n".join(out) + "\n"


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=1.5, help="per measured run (default 1.5)")
    p.add_argument("--repeats", type=int, default=3, help="passes over all scenarios (default 3)")
    p.add_argument("--ops", type=int, default=10_000, help="cap on operations per measured run")
    p.add_argument("--warmup", type=int, default=400, help="untimed operations before a scenario")
    p.add_argument("--count-ops", type=int, default=100, help="operations in the MONITOR pass")
    p.add_argument("--inproc-ops", type=int, default=2000, help="operations of the in-process app pass (0: none)")
    p.add_argument("--settle", type=float, default=1.2, help="seconds for background writes after a run")
    p.add_argument("--soak", type=int, default=0, help="requests of the memory soak (0: none)")
    p.add_argument("--soak-seconds", type=float, default=120, help="time limit of the soak (default 120)")
    p.add_argument("--sign-iterations", type=int, default=400)
    p.add_argument("--only", action="append", help="scenario name (repeatable)")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "latest.md")
    p.add_argument("--profile", type=Path, help="instead of measuring, sample the workers with py-spy into DIR")
    p.add_argument("--no-floor", action="store_true", help="without the floor app (bench/floor_app.py)")
    p.add_argument(
        "--scale",
        type=_sizes,
        default=(),
        metavar="N,N,...",
        help="scale curves at these numbers of live sessions (make bench: 10000,100000,1000000)",
    )
    p.add_argument("--scale-ops", type=int, default=4000, help="cap on operations per scale run (default 4000)")
    p.add_argument(
        "--per-user-ops",
        type=int,
        default=400,
        help="operations per run of the per-user list / invalidate-all (default 400)",
    )
    p.add_argument("--scale-repeats", type=int, default=5, help="runs per scale step and operation (default 5)")
    p.add_argument("--cluster", action="store_true", help="validate and refresh on a 3-primary Cluster vs one server")
    p.add_argument("--no-table", action="store_true", help="only the --scale and --cluster parts")
    return p.parse_args(argv)


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    if not sizes or any(n < 1 for n in sizes) or list(sizes) != sorted(set(sizes)):
        raise argparse.ArgumentTypeError("increasing positive numbers of sessions, comma-separated")
    return sizes


def extras(args: argparse.Namespace, private_pem: str, public_pem: str) -> tuple[list[str], int]:
    """The --scale and --cluster sections of the report, and their errors (wrong answers, error log lines)."""
    out: list[str] = []
    errors = 0
    if args.scale:
        with ExitStack() as stack:
            services = [stack.enter_context(running_service(private_pem, public_pem)) for _ in args.scale]
            at = [(deployed(svc), svc.redis_server.port) for svc in services]
            report = scale.scale(at, services[0].store.keys, args.scale, args, args.scale_repeats)
        lines = [line for svc in services for line in _problems(svc.gunicorn.log)]
        out += scale.render_scale(report) + ["", f"Scale servers' logs: {len(lines)} error lines."
                                                 + (f" First: {lines[0][:200]}" if lines else "")]  # fmt: skip
        errors += scale.scale_errors(report) + len(lines)
    if args.cluster:
        with running_service(private_pem, public_pem) as svc, running_on_cluster(private_pem, public_pem) as on:
            cluster, primaries, gunicorn = on
            svc.fixtures = make_fixtures(svc.target, max(CONCURRENCY))
            cluster.fixtures = make_fixtures(cluster.target, max(CONCURRENCY))
            compared = scale.cluster_compare(deployed(svc), cluster, primaries, args, args.repeats)
        lines = _problems(svc.gunicorn.log) + _problems(gunicorn.log)
        out += scale.render_cluster(compared) + ["", f"Server logs: {len(lines)} error lines."
                                                     + (f" First: {lines[0][:200]}" if lines else "")]  # fmt: skip
        errors += scale.cluster_errors(compared) + len(lines)
    return out, errors


def _problems(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(mark in line for mark in PROBLEM_MARKS)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    private_pem, public_pem = generate_key_pair()
    yard = measure_signing(private_pem, public_pem, args.sign_iterations)
    rows: list[Row] = []
    soak_points: list[tuple[int, tuple[float, ...]]] = []
    profiles: list[str] = []
    started = time.monotonic()
    if args.no_table:
        body, errors = extras(args, private_pem, public_pem)
        report = f"## Fluxer SSO benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}\n"
        report += f"\n- machine: {os.cpu_count()} cores ({_cpu_model()}), {platform.system()} {platform.release()}\n"
        report += f"- {_versions()}\n" + "\n".join(body) + "\n"
        return _write(report, args, started, errors)
    floor: dict[int, scale.Series] = {}
    with running_service(private_pem, public_pem) as svc, _floor(args) as floor_app:
        svc.fixtures = make_fixtures(svc.target, max(CONCURRENCY))
        captures, app_ms = {}, {}
        for scenario in scenarios:
            make_op = scenario.prepare(svc.target, svc.fixtures)
            run_load(svc.target.address, make_op, connections=max(CONCURRENCY), max_ops=args.warmup, seconds=5)
            time.sleep(min(QUIET, args.settle))
            if args.profile:
                profiles.append(profile(svc, scenario, args))
                print(profiles[-1], flush=True)
                continue
            captures[scenario] = capture_commands(svc, scenario, args)
            app_ms[scenario] = app_alone(svc, scenario, args) if args.inproc_ops else 0.0
        # Passes over every scenario, so that a burst of load from elsewhere on the machine
        # lands in one sample of several scenarios rather than in every sample of one.
        samples: dict[tuple[Scenario, int], list[Sample]] = {}
        if floor_app is not None:
            scale.load_ops(floor_app, scale.floor_op(floor_app), args.warmup)
        for n in range(0 if args.profile else args.repeats):
            for scenario in scenarios:
                for connections in CONCURRENCY:
                    sample = measure(svc, scenario, connections, args, last=n == args.repeats - 1)
                    samples.setdefault((scenario, connections), []).append(sample)
                    res = sample.result
                    print(f"  pass {n + 1}: {scenario.name} x{connections}: {res.ops} ops, {res.errors} errors, "
                          f"{sample.cpu_ms:.3f} ms CPU/op", file=sys.stderr, flush=True)  # fmt: skip
                    for reason, count in res.reasons.most_common(3):
                        print(f"    {count} x {reason}", file=sys.stderr)
            for connections in CONCURRENCY:
                if floor_app is None:
                    break
                measured = scale.measure(floor_app, scale.floor_op(floor_app), connections=connections, ops=args.ops,
                                         seconds=args.seconds, settle=min(QUIET, args.settle))  # fmt: skip
                floor.setdefault(connections, scale.Series()).add(measured, f"pass {n + 1}: floor x{connections}")
        for (scenario, connections), runs in samples.items():
            rows.append(row(svc, scenario, connections, runs))
            rows[-1].capture, rows[-1].app_ms = captures[scenario], app_ms[scenario]
        if args.soak:
            soak_points = soak(svc, args)
    if args.profile:
        (args.profile / "summary.md").write_text("\n".join(profiles))
        return 0
    report = render(rows, yard, soak_points, svc.gunicorn.log, args.repeats, floor)
    body, errors = extras(args, private_pem, public_pem)
    report += "\n".join(body) + ("\n" if body else "")
    errors += sum(r.result.errors for r in rows) + sum(s.total.errors for s in floor.values())
    return _write(report, args, started, errors)


@contextmanager
def _floor(args: argparse.Namespace) -> Iterator[scale.Deployed | None]:
    if args.no_floor or args.profile:
        yield None
        return
    with scale.floor_server(WORKERS) as floor_app:
        yield floor_app


def _write(report: str, args: argparse.Namespace, started: float, errors: int) -> int:
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"({time.monotonic() - started:.0f} s; written to {args.output})", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
