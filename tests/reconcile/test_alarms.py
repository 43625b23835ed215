"""The reconciler's alarms watch what its function emits."""

from __future__ import annotations

from typing import Any

import pytest

from tools.devserver.routes import ROOT, load_template

pytestmark = pytest.mark.unit


def _alarm(name: str) -> dict[str, Any]:
    resource: dict[str, Any] = load_template()["Resources"][name]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    return dict(resource["Properties"])


def test_a_catch_up_partial_run_after_run_alarms() -> None:
    alarm = _alarm("ReconcilePartialAlarm")
    # Watches the metric the function emits, in the namespace and dimensions of ours
    assert alarm["MetricName"] == "ReconcilePartial"
    assert '"ReconcilePartial"' in (ROOT / "functions" / "reconcile" / "app.py").read_text()
    assert alarm["Namespace"] == "Payments"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "service": "payments",
        "stage": {"Ref": "Stage"},
    }
    # Only when every run of three periods in a row was partial: one bad run heals next run
    assert alarm["Statistic"] == "Minimum"
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 3)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_the_partial_alarm_is_in_the_deploy_guide_and_the_runbook() -> None:
    for doc in ("deploy.md", "reconcile.md"):
        assert "ReconcilePartialAlarm" in (ROOT / "docs" / doc).read_text(), doc
