"""Migrations apply to the embedded PostgreSQL and to PostgreSQL 15 (what Supabase runs)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from tests.prerequisites import missing
from tools.db import MigrationChanged, apply_migrations, migration_files

pytestmark = pytest.mark.integration


def test_applying_twice_is_a_no_op(database_url: str) -> None:
    assert apply_migrations(database_url) == []


def test_every_migration_is_recorded(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        versions = {r[0] for r in conn.execute("select version from local_schema_migrations")}
    assert versions == {p.name.split("_", 1)[0] for p in migration_files()}


def test_rls_is_enabled_on_every_table_holding_member_data(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select relname from pg_class where relnamespace = 'public'::regnamespace "
            "and relkind = 'r' and not relrowsecurity"
        ).fetchall()
    assert rows == []


def _postgres15_bin() -> Path | None:
    for candidate in ("/usr/lib/postgresql/15/bin", "/usr/local/bin"):
        initdb = Path(candidate) / "initdb"
        if initdb.exists():
            version = subprocess.run(
                [str(initdb), "--version"], capture_output=True, text=True, check=False
            ).stdout
            if " 15." in version:
                return initdb.parent
    return None


def test_migrations_apply_to_postgresql_15() -> None:
    # Not pytest's tmp_path: as root the server runs as another user, who cannot enter it.
    tmp_path = Path(tempfile.mkdtemp(prefix="pg15-"))
    tmp_path.chmod(0o755)
    bindir = _postgres15_bin() or (Path(p).parent if (p := shutil.which("initdb")) else None)
    if bindir is None:
        missing("no PostgreSQL 15 server binaries here (.ci/run installs them)")
    data = tmp_path / "pg15"
    user = ["runuser", "-u", "embedded_postgres", "--"] if _is_root() else []
    if user:
        shutil.chown(tmp_path, "embedded_postgres")
    subprocess.run(
        [*user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-o",
            f"-k {tmp_path} -h ''",
            "-l",
            str(tmp_path / "log"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql://postgres@/postgres?host={tmp_path}"
        applied = apply_migrations(url)
        assert len(applied) == len(migration_files())
        with psycopg.connect(url) as conn:
            assert conn.execute("show server_version").fetchone()[0].startswith("15.")
    finally:
        subprocess.run(
            [*user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(tmp_path, ignore_errors=True)


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def test_a_migration_edited_after_it_was_applied_is_refused(database_url: str) -> None:
    # Given a database whose record of one migration has another checksum
    version = migration_files()[0].name.split("_", 1)[0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        [(original,)] = conn.execute(
            "select checksum from local_schema_migrations where version = %s", (version,)
        ).fetchall()
        conn.execute(
            "update local_schema_migrations set checksum = 'edited' where version = %s",
            (version,),
        )
    try:
        # When the migrations are applied again, then the edited file is named
        with pytest.raises(MigrationChanged, match=migration_files()[0].name):
            apply_migrations(database_url)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "update local_schema_migrations set checksum = %s where version = %s",
                (original, version),
            )


def test_the_function_index_is_fresh() -> None:
    from tools.sql_index import main

    assert main(["--check"]) == 0, "run python -m tools.sql_index"


def test_the_function_index_names_exactly_what_the_database_holds(database_url: str) -> None:
    # Given the index of where each function and view is defined now
    from tools.sql_index import current, scan

    entries = scan()
    # When the migrated database lists its own functions and views in public
    with psycopg.connect(database_url) as conn:
        functions = {
            r[0]
            for r in conn.execute(
                "select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
            )
        }
        views = {
            r[0]
            for r in conn.execute(
                "select relname from pg_class where relnamespace = 'public'::regnamespace "
                "and relkind = 'v'"
            )
        }
    # Then the index and the database agree: nothing dropped is listed, nothing is missing
    assert current(entries, "function") == functions
    assert current(entries, "view") == views


def test_no_function_is_defined_twice_with_different_arguments(database_url: str) -> None:
    # An overload left behind by a changed signature makes named calls ambiguous.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select proname from pg_proc where pronamespace = 'public'::regnamespace "
            "group by proname having count(*) > 1"
        ).fetchall()
    assert rows == []


def test_nothing_new_in_public_is_exposed_to_anon_or_members_by_default(database_url: str) -> None:
    # Given the migrated schema, when the migration role creates a table and a function later
    with psycopg.connect(database_url) as conn:
        conn.execute("create table public.later_table (id int)")
        conn.execute("create function public.later_fn() returns int language sql as 'select 1'")
        granted = conn.execute(
            "select has_table_privilege('anon', 'public.later_table', 'select'),"
            " has_table_privilege('authenticated', 'public.later_table', 'select'),"
            " has_function_privilege('anon', 'public.later_fn()', 'execute'),"
            " has_function_privilege('authenticated', 'public.later_fn()', 'execute')"
        ).fetchone()
        conn.rollback()
    # Then neither anon nor authenticated may use them until a migration grants it
    assert granted == (False, False, False, False)


def test_member_reads_are_not_executable_by_the_service_role(database_url: str) -> None:
    # As the service role (which bypasses RLS) they would return every member's rows.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.proname in ('member_payment_logs', 'member_subscriptions',"
            " 'member_data_export')"
            " and has_function_privilege('service_role', p.oid, 'execute')"
        ).fetchall()
    assert rows == []
