"""/_health answers 200 only while a write would land (SPEC: Redis topologies)."""

from __future__ import annotations

import dataclasses

import pytest

from app import create_app


@pytest.mark.topologies
def test_health_is_ok_where_writes_land(client, topology):
    """On one server, Sentinel and Cluster alike: 200, no-store, and nothing secret in the body."""
    response = client.get("/_health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_health_is_503_on_a_node_that_refuses_writes(settings, sentinel_set):
    """A replica (what a demoted master becomes) answers PING but refuses writes: 503 JSON."""
    (replica,) = sentinel_set.replica_ports()
    app = create_app(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{replica}/0"))
    try:
        response = app.test_client().get("/_health")
        assert response.status_code == 503
        assert response.get_json()["error"] == "temporarily_unavailable"
        assert "password" not in response.get_data(as_text=True)
    finally:
        app.extensions["sso"].redis.close()
