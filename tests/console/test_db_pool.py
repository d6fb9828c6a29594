"""PostgreSQL connections are pooled and bounded: a live server with a pool of 4 answers
more concurrent clients than that without errors and never opens a fifth connection for
requests; beside the pool, its worker keeps exactly one connection that LISTENs for new
jobs (console/jobs/wakeup.py), which README "Sizing PostgreSQL" counts.
(Before the pool, 16 clients x 50 requests opened 95 connections and got 106 errors.)"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from console.jobs.wakeup import APPLICATION_NAME as LISTENER
from tests.live import remove_tree, start_live_server

POOL = 4
CLIENTS = 16
REQUESTS_EACH = 25

pytestmark = [
    pytest.mark.cli,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="connection pooling is for PostgreSQL (SQLite has no server connections)",
    ),
]


def _connections(dsn: str, database: str) -> tuple[int, int]:
    """(request pool connections, job listener connections) of the server's database."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE application_name <> %s),"
            " count(*) FILTER (WHERE application_name = %s)"
            " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (LISTENER, LISTENER, database),
        ).fetchone()
    return int(row[0]), int(row[1])


def _drop(dsn: str, database: str) -> None:
    import psycopg

    admin = dsn.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_more_clients_than_the_pool_get_answers_not_errors(tmp_path):
    server = start_live_server(
        tmp_path,
        DB_POOL_MAX_SIZE=str(POOL),
        DB_POOL_MIN_SIZE="1",
        API_RATE_BURST="100000",
        API_RATE_LIMIT_PER_MINUTE="100000",
    )
    database_url = server.env["DATABASE_URL"]
    database = urlsplit(database_url).path.lstrip("/")
    peak = listeners = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak, listeners
        while not done.is_set():
            pooled, listening = _connections(database_url, database)
            peak, listeners = max(peak, pooled), max(listeners, listening)
            time.sleep(0.05)

    def client(n: int) -> list[int]:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            codes = []
            for i in range(REQUESTS_EACH):
                if i % 5 == 0:
                    response = http.post("/v1/keys", json={"name": f"c{n}-{i}"})
                else:
                    response = http.get("/v1/sandboxes")
                codes.append(response.status_code)
            return codes

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            codes = [c for result in pool.map(client, range(CLIENTS)) for c in result]
        elapsed = time.monotonic() - started
    finally:
        done.set()
        watcher.join(5)
        server.stop()
        remove_tree(server.data_dir)
        _drop(database_url, database)
    errors = [c for c in codes if c >= 500]
    print(f"{len(codes)} requests from {CLIENTS} clients in {elapsed:.1f} s; pool {POOL}, "
          f"peak pool connections {peak}, job listeners {listeners}; "
          f"status counts {sorted(set(codes))}")  # fmt: skip
    assert len(codes) == CLIENTS * REQUESTS_EACH and not errors
    assert set(codes) <= {200, 201, 429}  # 429: the per-project key cap, an answer
    assert 1 <= peak <= POOL
    assert listeners == 1
