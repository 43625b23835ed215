"""Fixtures for the member-data tests: both store adapters and a row writer."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from payments.adapters.postgres_store import PostgresStore
from payments.adapters.store import Store
from tests.member_data.rows import Rows, supabase_store


@pytest.fixture(params=["postgres", "supabase"])
def any_store(request: pytest.FixtureRequest, db: str) -> Iterator[Store]:
    """The direct Postgres adapter and the Supabase adapter, against the same database."""
    if request.param == "postgres":
        pg = PostgresStore(db)
        yield pg
        pg.close()
    else:
        yield supabase_store(db)


@pytest.fixture
def rows(db: str) -> Iterator[Rows]:
    with psycopg.connect(db, autocommit=True) as conn:
        yield Rows(conn)
