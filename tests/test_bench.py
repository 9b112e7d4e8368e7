"""The benchmark harness in its tiny mode: it runs every scenario and reports no errors.

No timing is asserted here: figures from a loaded CI machine mean nothing.
The harness starts its own redis-server and gunicorn, as `make bench` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import CONCURRENCY
from bench.scenarios import SCENARIOS
from tests.redis_server import has_redis_server

ROOT = Path(__file__).resolve().parent.parent
REPEATS, OPS = 2, 50
TINY = ["--seconds", "2", "--ops", str(OPS), "--repeats", str(REPEATS), "--warmup", "16", "--count-ops", "5",
        "--inproc-ops", "20", "--settle", "0.05", "--sign-iterations", "20", "--soak", "200"]  # fmt: skip


@pytest.mark.skipif(not has_redis_server(), reason="the benchmark starts its own redis-server")
def test_tiny_benchmark_reports_every_scenario_without_errors(tmp_path: Path) -> None:
    """Every scenario at every concurrency completes its operations in every pass, all answered as expected."""
    out = tmp_path / "bench.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", *TINY, "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line.split("|")[1:-1] for line in out.read_text().splitlines() if line.startswith("| ")][1:]
    seen = {(cells[0].strip(), int(cells[1])): cells for cells in rows}
    for scenario in SCENARIOS:
        for connections in CONCURRENCY:
            cells = seen[(scenario.name, connections)]
            assert int(cells[2]) == REPEATS * OPS, cells  # ops
            assert int(cells[6]) == 0, cells  # errors
    assert "Memory soak" in out.read_text()
    assert " 0 error lines." in out.read_text()
