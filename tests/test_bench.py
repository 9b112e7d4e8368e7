"""The benchmark harness in its tiny mode: it runs every scenario and every part, and reports no errors.

No timing is asserted here: figures from a loaded CI machine mean nothing.
The harness starts its own redis-server (and, for --cluster, a 3-primary
Redis Cluster) and gunicorn, as `make bench` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import CONCURRENCY, FLOOR_TARGETS
from bench.scenarios import SCENARIOS
from tests.redis_server import has_redis_server

ROOT = Path(__file__).resolve().parent.parent
REPEATS, OPS = 2, 150  # enough work for the cheapest path to span several 10 ms CPU ticks
SCALE = (1000, 2000)
TINY = ["--seconds", "4", "--ops", str(OPS), "--repeats", str(REPEATS), "--warmup", "16", "--count-ops", "5",
        "--inproc-ops", "20", "--settle", "0.05", "--sign-iterations", "20", "--soak", "200",
        "--scale", ",".join(map(str, SCALE)), "--scale-ops", "40", "--scale-repeats", "2", "--per-user-ops", "10",
        "--cluster"]  # fmt: skip


def tables(text: str) -> dict[str, list[list[str]]]:
    """Every Markdown table of the report, by its first header cell: its rows' cells, stripped."""
    found: dict[str, list[list[str]]] = {}
    rows: list[list[str]] | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            rows = None
            continue
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if rows is None:
            rows = found.setdefault(cells[0], [])
        elif not set(cells[0]) <= set("-:"):
            rows.append(cells)
    return found


@pytest.mark.skipif(not has_redis_server(), reason="the benchmark starts its own redis-server")
def test_tiny_benchmark_reports_every_scenario_without_errors(tmp_path: Path) -> None:
    """Every scenario at every concurrency completes its operations in every pass, all answered as expected;
    so do the floor, the scale steps, the per-user operations and the Cluster comparison."""
    out = tmp_path / "bench.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", *TINY, "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text = out.read_text()
    found = tables(text)
    seen = {(cells[0], int(cells[1])): cells for cells in found["scenario"] if cells[1].isdigit()}
    for scenario in SCENARIOS:
        for connections in CONCURRENCY:
            cells = seen[(scenario.name, connections)]
            assert int(cells[2]) == REPEATS * OPS, cells  # ops
            assert int(cells[6]) == 0, cells  # errors
            assert float(cells[-1]) > 0, cells  # × floor
    floor = {int(cells[1]): cells for cells in found["floor"]}
    assert set(floor) == set(CONCURRENCY)
    assert all(int(cells[2]) == REPEATS * OPS and int(cells[6]) == 0 for cells in floor.values()), floor
    assert [cells[0] for cells in found["endpoint"]] == list(FLOOR_TARGETS)
    steps = found["live sessions"]
    assert [int(cells[0].replace(",", "")) for cells in steps] == list(SCALE)
    assert all(cells[3] == "0" and cells[6] == "0" for cells in steps), steps  # validate, refresh errors
    assert all(int(cells[7].removesuffix(" B").replace(",", "")) > 0 for cells in steps), steps  # bytes/session
    assert "Flatness, largest / smallest step" in text
    per_user = found["sessions of the user"]
    assert [cells[0] for cells in per_user] == ["1", "10", "100"]
    assert all(cells[3] == "0" and cells[6] == "0" for cells in per_user), per_user  # list, invalidate-all errors
    cluster = {cells[0]: cells for cells in found["scenario"] if not cells[1].isdigit()}
    assert set(cluster) == {"session/validate", "refresh grant"}
    assert all(cells[5] == "0" for cells in cluster.values()), cluster
    assert "Memory soak" in text
    assert " 0 error lines." in text
    assert "Scale servers' logs: 0 error lines." in text
    assert "Server logs: 0 error lines." in text
