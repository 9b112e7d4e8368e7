"""What the benchmark reads from the server side: /proc and Redis.

CPU is read only from the server's own processes (the gunicorn master, its
workers, the redis-server), never from the load generator: utime + stime
from ``/proc/<pid>/stat``. Memory is VmRSS from ``/proc/<pid>/status``. Redis
work comes from ``INFO commandstats`` (which, on Redis 7, counts the commands
a Lua script runs as well as the EVALSHA that ran it) and, for the split
between the two, from a short MONITOR capture.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sso.store.scripts import NAMES, source

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2 :].split()  # fields from 3 (state) on; comm may hold spaces


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15: utime, stime


def children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat_fields(int(entry))[1]) == pid:
                    kids.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return sorted(kids)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    workers: tuple[int, ...]
    gunicorn: float  # seconds: master + workers
    redis: float  # every redis-server counted (one, or a cluster's six)
    machine: float  # every process on the machine


def cpu_snapshot(master: int, redis_pids: Sequence[int]) -> CpuSnapshot:
    workers = tuple(children(master))
    gunicorn = sum(cpu_seconds(p) for p in (master, *workers))
    return CpuSnapshot(workers, gunicorn, sum(cpu_seconds(p) for p in redis_pids), machine_busy_seconds())


# -- Redis -----------------------------------------------------------------------


def commandstats(client: object) -> Counter[str]:
    """Calls per command from INFO commandstats, without the benchmark's own INFO."""
    info = client.info("commandstats")  # type: ignore[attr-defined]
    calls: Counter[str] = Counter()
    for name, stats in info.items():
        command = name.removeprefix("cmdstat_")
        if command not in ("info", "monitor"):
            calls[command] = int(stats["calls"])
    return calls


def script_names() -> dict[str, str]:
    """SHA1 -> name of every Lua script of the store (sso/store/lua), as redis-py registers them."""
    return {hashlib.sha1(source(name).encode()).hexdigest(): name for name in NAMES}


@dataclass
class Capture:
    top_level: Counter[str]  # command (and script name for EVALSHA) -> count
    in_scripts: Counter[str]


class Monitor:
    """MONITOR on a raw socket, in a thread: which commands clients send, which scripts run.

    MONITOR slows Redis down, so it runs only in a separate, untimed pass.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        self.sock.sendall(b"MONITOR\r\n")
        self.capture = Capture(Counter(), Counter())
        self._names = script_names()
        self._stop = threading.Event()
        self._buffer = b""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\r\n")
            for line in lines:
                self._line(line.decode("utf-8", "replace"))

    def _line(self, line: str) -> None:
        if line == "+OK":
            self._ready.set()
            return
        # +1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "<sha>" ...   or   [0 lua] "GET" ...
        try:
            source = line.split("[", 1)[1].split("]", 1)[0].split(" ", 1)[1]
            words = line.split("] ", 1)[1].split('" "')
        except IndexError:
            return
        command = words[0].strip('"').lower()
        if source == "lua":
            self.capture.in_scripts[command] += 1
            return
        if command == "evalsha" and len(words) > 1:
            sha = words[1].strip('"')
            command = f"evalsha:{self._names.get(sha, sha[:8])}"
        self.capture.top_level[command] += 1

    def stop(self) -> Capture:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return self.capture
