"""Shared fixtures: a real Postgres (``DATABASE_URL`` or embedded), clean state per test, and
handler environments. Unit tests never reach the network: every outbound address is local."""

from __future__ import annotations

import os

# Settings for handlers under test, before any payments module reads them.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Payments")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "payments")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from payments.adapters.postgres_store import PostgresStore
from payments.deadline import start_invocation
from payments.settings import get_settings
from tools.db import ROOT, apply_migrations, start_embedded

STATE_TABLES = (
    "payment_logs",
    "processed_events",
    "customers",
    "purchases",
    "subscriptions",
    "refunds",
    "outbox",
    "erasures",
    "charges",
    "disputes",
    "subscription_invoices",
    "reconcile_state",
    "reconcile_runs",
)


def _server_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    # Shared by the run's workers; the last one to finish stops it (see tools.db).
    return url or start_embedded(ROOT / ".local" / "pgtest")


def _with_database(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture(scope="session")
def database_url(worker_id: str) -> str:
    """A migrated database of its own for this test worker."""
    server = _server_url()
    name = f"payments_test_{worker_id}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = _with_database(server, name)
    apply_migrations(url)
    return url


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "main"


def truncate_state(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("truncate {} restart identity cascade").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in STATE_TABLES)
            )
        )


@pytest.fixture
def db(database_url: str) -> str:
    """The database URL, with every state table empty at the start of the test."""
    truncate_state(database_url)
    return database_url


@pytest.fixture
def store(db: str) -> Iterator[PostgresStore]:
    pg = PostgresStore(db)
    yield pg
    pg.close()


@pytest.fixture(autouse=True)
def no_lambda_deadline() -> Iterator[None]:
    """Each test starts outside any invocation. A handler sets its deadline in the thread's
    context; left there, it would make a later test's retries give up as if out of time."""
    start_invocation(None)
    yield
    start_invocation(None)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set environment variables for a handler; settings are re-read for each test."""
    for name in list(os.environ):
        if name.startswith(
            ("STRIPE_", "SUPABASE_", "MEMBERSTACK_", "MAKE_", "SENTRY_")
        ) or name in (
            "DATABASE_URL",
            "ADMIN_MEMBER_IDS",
            "WEBHOOK_QUEUE_URL",
            "CHECKOUT_SUCCESS_URL",
            "CHECKOUT_CANCEL_URL",
            "ALLOWED_ORIGINS",
            "RETENTION_MONTHS",
        ):
            monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


EVENTS_DIR = ROOT / "events"


def event_file(name: str) -> Path:
    return EVENTS_DIR / f"{name}.json"
