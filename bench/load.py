"""A small closed-loop HTTP/1.1 load generator over raw keep-alive sockets.

Each connection runs one *operation* at a time: a generator that yields the
bytes of a request, receives the parsed ``Reply`` and either yields the next
request (an authorize + code exchange is two) or returns. An operation raises
``Unexpected`` when an answer is not what a healthy service sends; that is an
error, and the connection carries on with the next operation.

The loop is one thread on ``selectors``: no threads or GIL contention in the
generator, little CPU per request, so it steals as little as possible from
the server it measures. It is bounded twice: it starts no operation after
``max_ops`` operations or ``seconds`` seconds, and gives up on what is still in
flight ``grace`` seconds later, counting it as errors.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

Op = Generator[bytes, "Reply", Any]


class Unexpected(Exception):
    """An answer a healthy service would not give; the message says which."""


class ProtocolError(Exception):
    """A response this parser cannot frame; the connection is dropped."""


class ConnectionLost(Exception):
    """The server closed the connection."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class ResponseReader:
    """Incremental parser for one HTTP/1.1 response at a time (Content-Length bodies)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> Reply | None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            length = int(headers["content-length"])
        elif status in (204, 304) or status < 200:
            length = 0
        else:
            raise ProtocolError(f"{status} without Content-Length")
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return Reply(status, headers, body)


def request(method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """The bytes of one keep-alive HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def connect(address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drive(sock: socket.socket, op: Op) -> Any:
    """Run one operation to completion over a blocking socket (setup, not load)."""
    reader = ResponseReader()
    try:
        data = next(op)
        while True:
            sock.sendall(data)
            reply = None
            while reply is None:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("connection closed by the server")
                reply = reader.feed(chunk)
            data = op.send(reply)
    except StopIteration as done:
        return done.value


@dataclass
class LoadResult:
    ops: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, successful operations
    reasons: Counter[str] = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # the load generator's own CPU, for the record

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def merge(results: list[LoadResult]) -> LoadResult:
    """Several runs of one scenario as one."""
    total = LoadResult()
    for r in results:
        total.ops += r.ops
        total.errors += r.errors
        total.seconds += r.seconds
        total.latencies += r.latencies
        total.reasons += r.reasons
        total.cpu_seconds += r.cpu_seconds
    return total


class _Conn:
    def __init__(self, index: int, sock: socket.socket) -> None:
        self.index = index
        self.sock = sock
        self.reader = ResponseReader()
        self.op: Op | None = None
        self.started = 0.0
        self.out = b""


def run(
    address: tuple[str, int],
    make_op: Callable[[int], Op],
    *,
    connections: int,
    max_ops: int,
    seconds: float,
    grace: float = 10.0,
) -> LoadResult:
    """Closed loop: ``connections`` keep-alive connections, each one operation at a time."""
    result = LoadResult()
    selector = selectors.DefaultSelector()
    conns = []
    for index in range(connections):
        sock = connect(address)
        sock.setblocking(False)
        conns.append(_Conn(index, sock))
    begun = 0
    t0 = time.perf_counter()
    stop_starting = t0 + seconds

    def send(conn: _Conn, data: bytes) -> None:
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        conn.out = data[sent:]
        selector.modify(conn.sock, selectors.EVENT_WRITE if conn.out else selectors.EVENT_READ, conn)

    def start(conn: _Conn) -> bool:
        nonlocal begun
        if begun >= max_ops or time.perf_counter() >= stop_starting:
            conn.op = None
            return False
        begun += 1
        conn.op = make_op(conn.index)
        conn.started = time.perf_counter()
        send(conn, next(conn.op))
        return True

    def finish(conn: _Conn, reason: str | None) -> None:
        if reason is None:
            result.latencies.append(time.perf_counter() - conn.started)
        else:
            result.errors += 1
            result.reasons[reason] += 1
        result.ops += 1

    in_flight = 0
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        in_flight += start(conn)
    give_up = stop_starting + grace
    while in_flight and time.perf_counter() < give_up:
        for key, _ in selector.select(timeout=0.5):
            conn = key.data
            assert conn.op is not None
            if conn.out:
                send(conn, conn.out)
                continue
            try:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    raise ConnectionLost("connection closed by the server")
                reply = conn.reader.feed(chunk)
                if reply is None:
                    continue
                send(conn, conn.op.send(reply))
                continue
            except StopIteration:
                finish(conn, None)
                usable = True
            except Unexpected as exc:  # a wrong answer, but the stream is still in step
                finish(conn, str(exc))
                usable = True
            except (ConnectionLost, ProtocolError, OSError) as exc:
                finish(conn, str(exc) or type(exc).__name__)
                usable = False
            if not (usable and start(conn)):
                selector.unregister(conn.sock)
                in_flight -= 1
    result.seconds = time.perf_counter() - t0
    selector.close()
    for conn in conns:
        conn.sock.close()
    if in_flight:
        result.ops += in_flight
        result.errors += in_flight
        result.reasons["no answer before the deadline"] += in_flight
    return result
