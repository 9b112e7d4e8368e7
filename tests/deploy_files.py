"""Rendering the shipped files under deploy/ for a test run.

Tests use the files as shipped and rewrite only what cannot exist on a test
machine (ports, certificate and log paths, the install prefix). Every string a
test rewrites must still be in the file, so an edit to a deploy file that the
test no longer matches fails loudly instead of testing something else.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.server import ROOT

DEPLOY = ROOT / "deploy"


def substitute(path: Path, replacements: dict[str, str], text: str | None = None) -> str:
    """``path``'s text (or ``text``) with each key replaced; every key must occur."""
    text = path.read_text() if text is None else text
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{path.relative_to(ROOT)} no longer contains {old!r}; update the test's rendering")
        text = text.replace(old, new)
    return text


def gunicorn_graceful_timeout() -> int:
    """``graceful_timeout`` as deploy/gunicorn.conf.py computes it with no .env file and no override."""
    result = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path('deploy/gunicorn.conf.py')['graceful_timeout'])"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SSO_ENV_FILE": "/dev/null"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(result.stdout)
