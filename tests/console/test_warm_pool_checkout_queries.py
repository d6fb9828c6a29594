"""A warm-pool checkout stays a handful of database round trips (bench/README.md, "Warm-pool
checkout"): on PostgreSQL each statement is one round trip, and the checkout's latency goal
(p50 20 ms) leaves room for few. Counted through the Django test client, on a real pool."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from console.models import LifecycleEvent, Sandbox, WarmPool
from console.warm_pools import filler

pytestmark = pytest.mark.django_db

# The key, the pool; the transaction's start and end (a savepoint under the test's own
# transaction); in it the claim, the refill job (and its NOTIFY on PostgreSQL), both
# lifecycle events, the project's webhooks; then the answer's volume attachments.
# PostgreSQL claims, counts and reads back in one statement; SQLite in four (pick, claim,
# counter, read back). Before this was cut (bench/README.md) PostgreSQL took 18.
MAX_QUERIES = {"postgresql": 10, "sqlite": 12}


def post(client, url, body):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_a_checkout_takes_few_round_trips(runtime, api):
    made = post(
        api,
        "/v1/template-warm-pools",
        {"template_ref": "base", "name": "q", "min_ready": 1, "max_ready": 1},
    )
    assert made.status_code == 201, made.content
    pool = made.json()
    filler.work_on(WarmPool.objects.get(public_id=pool["id"]).pk)
    with CaptureQueriesContext(connection) as queries:
        got = post(
            api,
            "/v1/sandboxes",
            {"template": "base", "warm_pool": {"id": pool["id"], "mode": "require"}},
        )
    assert got.status_code == 201, got.content
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) <= MAX_QUERIES[connection.vendor], "\n".join(statements)
    claimed = Sandbox.objects.get(public_id=got.json()["id"])
    assert claimed.warm_pool_id is None
    assert WarmPool.objects.get(public_id=pool["id"]).claimed_count == 1
    events = LifecycleEvent.objects.filter(
        sandbox_id=claimed.public_id, metadata__warm_pool_checkout="ready_instance"
    )
    assert sorted(events.values_list("status", flat=True)) == ["requested", "succeeded"]
    if connection.vendor == "postgresql":
        assert any("SKIP LOCKED" in sql and "RETURNING" in sql for sql in statements)
