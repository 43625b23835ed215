"""The retention-purge function through its Lambda entry point."""

from __future__ import annotations

import json

import pytest

from functions.retention_purge import app as purge_app
from tests.conftest import event_file
from tests.fakes.lambda_context import FakeLambdaContext
from tests.member_data.rows import Rows

pytestmark = pytest.mark.integration


@pytest.fixture
def purge_env(env: pytest.MonkeyPatch, db: str) -> pytest.MonkeyPatch:
    env.setenv("DATABASE_URL", db)
    return env


def test_the_scheduled_event_purges_and_emits_the_count(
    purge_env: pytest.MonkeyPatch,
    rows: Rows,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given two expired log lines and a recent one
    rows.log("mem_a", ago="25 months")
    rows.log("mem_a", ago="25 months")
    rows.log("mem_a")
    # When EventBridge's daily event arrives
    event = json.loads(event_file("retention_purge").read_text())
    result = purge_app.lambda_handler(event, FakeLambdaContext("Purge", timeout_seconds=300))
    # Then the expired rows are gone, and the count is a metric and a log line
    assert (result["complete"], result["total"]) == (True, 2)
    assert rows.count("payment_logs") == 1
    out = capsys.readouterr().out
    metric = next(json.loads(line) for line in out.splitlines() if "RetentionRowsPurged" in line)
    assert metric["RetentionRowsPurged"] in ([2.0], 2.0)
    finished = next(r for r in caplog.records if r.getMessage() == "retention purge finished")
    assert finished.total == 2


def test_a_dry_run_counts_and_deletes_nothing(purge_env: pytest.MonkeyPatch, rows: Rows) -> None:
    rows.log("mem_a", ago="25 months")
    result = purge_app.lambda_handler(
        {"dry_run": True}, FakeLambdaContext("Purge", timeout_seconds=300)
    )
    assert (result["dry_run"], result["total"]) == (True, 1)
    assert rows.count("payment_logs") == 1


def test_too_little_time_left_stops_before_any_batch_and_reports_it(
    purge_env: pytest.MonkeyPatch, rows: Rows
) -> None:
    # Given an expired row and an invocation with less time than the margin
    rows.log("mem_a", ago="25 months")
    result = purge_app.lambda_handler({}, FakeLambdaContext("Purge", timeout_seconds=5))
    # Then it stops cleanly, incomplete, and the next run with time finishes
    assert (result["complete"], result["total"]) == (False, 0)
    assert rows.count("payment_logs") == 1
    again = purge_app.lambda_handler({}, FakeLambdaContext("Purge", timeout_seconds=300))
    assert (again["complete"], again["total"]) == (True, 1)


def test_a_failure_alerts_and_fails_the_invocation(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(Exception, match="database is unavailable"):
        purge_app.lambda_handler({}, FakeLambdaContext("Purge", timeout_seconds=300))
    alert = next(r for r in caplog.records if r.getMessage() == "retention purge failed")
    assert alert.alert is True
    assert alert.levelname == "ERROR"
