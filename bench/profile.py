"""Where the server's CPU goes: py-spy samples of the gunicorn workers, summarised.

``make bench-profile`` (``python -m bench.run --profile DIR``) runs each
scenario at concurrency 16 while ``py-spy record`` samples both workers
(``--nonblocking``: the workers are never paused; py-spy runs in its own
process). The raw stacks are kept in DIR, and each scenario is summarised as
self time per component — the package whose code was on CPU (native code
such as OpenSSL's RSA counts towards the Python function that called it) —
and the functions with the most self time. Profiling costs CPU, so a
profiled run's figures are not the benchmark's: it runs apart from it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

RATE = 997  # samples per second per worker; a prime, so as not to beat with timers
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
_COMPONENTS = {
    "gunicorn": "gunicorn (HTTP parsing, worker loop)",
    "gevent": "gevent (hub, sockets, greenlets)",
    "greenlet": "gevent (hub, sockets, greenlets)",
    "flask": "Flask + Werkzeug",
    "werkzeug": "Flask + Werkzeug",
    "marshmallow": "marshmallow",
    "redis": "redis-py",
    "jose": "python-jose (+ RSA in cryptography/OpenSSL)",
    "cryptography": "python-jose (+ RSA in cryptography/OpenSSL)",
    "sso": "sso/ + app.py (this service)",
}


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: make install-dev installs it (requirements-dev.txt)")
    return found


def record(pids: list[int], seconds: float, out: Path) -> list[subprocess.Popen[bytes]]:
    """Start one sampler per worker; the caller drives load meanwhile and waits for them."""
    out.mkdir(parents=True, exist_ok=True)
    options = ["--format", "raw", "--nolineno", "--nonblocking", "--rate", str(RATE)]
    duration = ["--duration", str(max(1, round(seconds)))]
    return [
        subprocess.Popen(
            [py_spy(), "record", *options, *duration, "--pid", str(pid), "--output", str(out / f"worker-{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def component(frame: str) -> str:
    """The package a frame's code belongs to (py-spy names files relative to their sys.path entry)."""
    match = _FRAME.match(frame)
    path = Path(match.group("file") if match else frame)
    if "site-packages" in path.parts:
        path = Path(*path.parts[path.parts.index("site-packages") + 1 :])
    top = path.parts[0].removesuffix(".py") if path.parts else "?"
    if top in _COMPONENTS:
        return _COMPONENTS[top]
    if top in ("app", "wsgi", "config"):
        return _COMPONENTS["sso"]
    if top in sys.stdlib_module_names or top.startswith("<frozen"):
        return "stdlib json" if top == "json" else "Python stdlib (other)"
    return top


def summarise(raw_files: list[Path], ms_per_op: float, top: int = 12) -> str:
    """Self time per component and per function: share of all samples, and ms of worker CPU per operation."""
    by_component: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for raw in raw_files:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            leaf = stack.split(";")[-1]
            by_component[component(leaf)] += n
            by_function[_short(leaf)] += n
            total += n
    if not total:
        return "no samples\n"

    def row(name: str, n: int) -> str:
        return f"| {100 * n / total:.1f}% | {ms_per_op * n / total:.3f} | {name} |"

    lines = [f"{total} samples, worker CPU {ms_per_op:.3f} ms/op. Self time by component:", "",
             "| share | ms/op | component |", "|--:|--:|---|"]  # fmt: skip
    lines += [row(name, n) for name, n in by_component.most_common()]
    lines += ["", "Functions with the most self time:", "", "| share | ms/op | function |", "|--:|--:|---|"]
    lines += [row(name, n) for name, n in by_function.most_common(top)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = Path(match.group("file"))
    if "site-packages" in path.parts:
        path = Path(*path.parts[path.parts.index("site-packages") + 1 :])
    return f"{match.group('func')} ({path})"
