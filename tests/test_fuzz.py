"""Schemathesis fuzzing of every documented operation through the Flask app (WSGI), from docs/openapi.json.

Bounded and reproducible: a fixed seed, derandomized generation and a fixed
number of examples per operation (schema-conforming and schema-violating data
mixed), so a run takes seconds and always sends the same requests. Checks: no
5xx, every status, header and body as documented (JSON where documented,
errors in the ``{"error", "error_description"}`` shape), schema-violating input
refused, wrong service secrets refused, and no stack trace in any answer.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis import Case

from tests.conftest import SERVICE_SECRET
from tests.test_openapi import CHECKED_IN as DOCUMENT

EXAMPLES = 25  # per operation, schema-conforming and schema-violating together
SEED = 20261127
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "stateful": {"enabled": False}},
        # The real secret, so the fuzz reaches past authentication; the ignored_auth check
        # meanwhile sends wrong ones and expects them refused.
        "auth": {"openapi": {"service": {"api_key": f"Service {SERVICE_SECRET}"}}},
        # Schema-valid is not semantically valid here: a well-formed but unknown client_id, redirect URI or
        # token is rightly a 400/401. Every other check stays on, negative_data_rejection included.
        # Schema-violating data may also be refused as too large (413, the 64 KiB body limit).
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 413, 415, 429]},
        },
    }
)
TRACE_MARKERS = ("Traceback (most recent call last)", '.py", line ')


# The checked-in document is what the app serves (tests/test_openapi.py), so it can be loaded at collection.
schema = schemathesis.openapi.from_path(str(DOCUMENT), config=CONFIG)


@pytest.fixture
def settings_overrides() -> dict:
    """Rate limits off: the fuzz is about input handling; tests/test_ratelimit.py covers the 429s."""
    return {f"rate_limit_{name}_failures": None for name in ("service_auth", "token", "authorize")}


@schema.parametrize()
@hypothesis.settings(suppress_health_check=list(hypothesis.HealthCheck), deadline=None, database=None)
def test_no_operation_fails_on_generated_input(case: Case, app):
    """Generated requests never get a 5xx, an undocumented status or body, or a stack trace."""
    # The schema came from the file: bind this test's app, for the checks that send requests of their own too.
    case.operation.app = case.operation.schema.app = app
    response = case.call()
    case.validate_response(response)
    assert response.status_code < 500, response.text
    text = response.text
    assert not any(marker in text for marker in TRACE_MARKERS), text
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/json"], response.headers
        assert set(response.json()) == {"error", "error_description"}, text
