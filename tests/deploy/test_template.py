"""What the template promises about deployments, read from template.yaml itself: each
function reads only its own secrets by ARN with a matching least-privilege policy, rolls out
behind alarms, and every checkov skip says why."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from payments.settings import Settings
from tools.devserver.routes import ROOT, function_names, load_template

pytestmark = pytest.mark.unit

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = function_names(TEMPLATE)
GLOBAL_ENV: dict[str, Any] = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
SECRET_PARAMETERS = {n for n, p in TEMPLATE["Parameters"].items() if p.get("NoEcho")}
STORE_SETTINGS = {"SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_JWT_SECRET"}


def _ref(value: Any) -> str | None:
    """The logical id a value refers to (!Ref X, or !If [cond, !Ref X, NoValue])."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "If" in value:
        return _ref(value["If"][1])
    return None


def _env(function: str) -> dict[str, Any]:
    own = FUNCTIONS[function]["Properties"].get("Environment", {}).get("Variables", {})
    return {**GLOBAL_ENV, **own}


def _granted_secrets(function: str) -> set[str]:
    granted = set()
    for policy in FUNCTIONS[function]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "If" in policy:
            policy = policy["If"][1]
        if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
            granted.add(_ref(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]))
    return {g for g in granted if g}


def _required(function: str) -> tuple[set[str], bool]:
    """The settings a function's handler requires (REQUIRED and bootstrap(...)), and whether
    it needs the store."""
    code_uri = FUNCTIONS[function]["Properties"]["CodeUri"].strip("/")
    tree = ast.parse((ROOT / code_uri / "app.py").read_text())
    names: set[str] = set()
    store = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "REQUIRED" for t in node.targets
        ):
            names |= {str(ast.literal_eval(e)).upper() for e in node.value.elts}  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "bootstrap":
            names |= {a.value.upper() for a in node.args if isinstance(a, ast.Constant)}
            store = store or any(k.arg == "store" for k in node.keywords)
    return names, store


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_no_secret_is_in_a_functions_environment(function: str) -> None:
    for name, value in _env(function).items():
        assert _ref(value) not in SECRET_PARAMETERS, f"{function}: {name} holds a secret"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_a_function_may_read_exactly_the_secrets_it_is_pointed_at(function: str) -> None:
    pointed = {_ref(v) for n, v in _env(function).items() if n.endswith("_ARN")}
    assert pointed == _granted_secrets(function)
    # and each ARN variable names the secret that holds that very setting
    for name, value in _env(function).items():
        if name.endswith("_ARN"):
            secret = RESOURCES[str(_ref(value))]
            assert secret["Type"] == "AWS::SecretsManager::Secret"
            assert secret["Properties"]["Name"]["Sub"].endswith("/" + name.removesuffix("_ARN"))
            assert name.removesuffix("_ARN").lower() in Settings.model_fields


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_a_function_gets_every_setting_its_handler_requires(function: str) -> None:
    required, store = _required(function)
    given = {n.removesuffix("_ARN") for n in _env(function)}
    assert required <= given
    if store:
        assert given >= STORE_SETTINGS


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_rolls_out_behind_an_alarm_that_exists(function: str) -> None:
    assert TEMPLATE["Globals"]["Function"]["AutoPublishAlias"] == "live"
    alarms = FUNCTIONS[function]["Properties"]["DeploymentPreference"]["Alarms"]
    assert alarms
    for alarm in alarms:
        assert RESOURCES[str(_ref(alarm))]["Type"] == "AWS::CloudWatch::Alarm"


def test_a_change_to_the_shared_layer_alone_publishes_new_versions() -> None:
    # The alias moves only to a new version, and by default a version is hashed on the
    # function's own code: the domain code in the layer would otherwise never go live.
    for function in FUNCTIONS.values():
        assert function["Properties"]["AutoPublishAliasAllProperties"] is True
    assert RESOURCES["SharedLayer"]["Properties"]["PublishLambdaVersion"] is True


def test_rollback_alarms_are_error_alarms_never_backlog_ones() -> None:
    # A backlog alarm already firing would block the very deployment that fixes its cause.
    triggers = {
        _ref(alarm)
        for resource in FUNCTIONS.values()
        for alarm in resource["Properties"]["DeploymentPreference"]["Alarms"]
    }
    assert "WebhookDeadLetterAlarm" not in triggers
    assert "WebhookQueueAgeAlarm" not in triggers
    assert "RetentionPurgeIncompleteAlarm" not in triggers
    assert "ReconcileItemsStuckAlarm" not in triggers
    assert "OldestPendingDispatchAlarm" not in triggers


def test_the_reconciler_runs_on_its_schedule_one_at_a_time() -> None:
    reconciler = FUNCTIONS["ReconcileFunction"]["Properties"]
    assert reconciler["ReservedConcurrentExecutions"]["If"][1] == 1
    schedule = reconciler["Events"]["Schedule"]["Properties"]
    assert _ref(schedule["Schedule"]) == "ReconcileScheduleRate"
    assert TEMPLATE["Parameters"]["ReconcileScheduleRate"]["Default"] == "rate(15 minutes)"


def test_the_worker_reserves_what_its_queue_may_run_at_once() -> None:
    worker = FUNCTIONS["WebhookWorkerFunction"]["Properties"]
    reserved = worker["ReservedConcurrentExecutions"]["If"][1]
    maximum = worker["Events"]["StripeEvents"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    assert reserved >= maximum


@pytest.mark.parametrize(
    ("alarm", "emitted_by"),
    [
        ("RetentionPurgeIncompleteAlarm", "functions/retention_purge/app.py"),
        ("WebhookServerErrorsAlarm", "functions/webhook/app.py"),
        ("ReconcileItemsStuckAlarm", "functions/reconcile/app.py"),
        ("OldestPendingDispatchAlarm", "functions/reconcile/app.py"),
    ],
)
def test_alarms_on_our_metrics_watch_a_metric_the_code_emits(alarm: str, emitted_by: str) -> None:
    metric = RESOURCES[alarm]["Properties"]["MetricName"]
    assert f'"{metric}"' in (ROOT / emitted_by).read_text()


def test_every_checkov_skip_says_why() -> None:
    skips = [
        (name, skip)
        for name, resource in RESOURCES.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV"), name
        assert len(skip.get("comment", "")) > 60, f"{name}: {skip['id']} needs its reason"


def test_the_deploy_guide_asks_for_the_quota_the_template_reserves() -> None:
    import re

    reserved = sum(
        f["Properties"]["ReservedConcurrentExecutions"]["If"][1]
        for f in FUNCTIONS.values()
        if "ReservedConcurrentExecutions" in f["Properties"]
    )
    guide = (ROOT / "docs" / "deploy.md").read_text()
    [(in_all, quota)] = re.findall(
        r"\((\d+) in all\)\. Lambda keeps 100 unreserved, so\s+the account needs a quota of at "
        r"least (\d+)",
        guide,
    )
    assert (int(in_all), int(quota)) == (reserved, reserved + 100)


def test_alarms_on_our_metrics_watch_their_own_stage() -> None:
    # Two stacks in one account emit the same metric names: the dimension keeps them apart.
    ours = [r for r in RESOURCES.values() if r["Properties"].get("Namespace") == "Payments"]
    assert ours
    for alarm in ours:
        dimensions = {d["Name"]: d["Value"] for d in alarm["Properties"]["Dimensions"]}
        assert dimensions == {"service": "payments", "stage": {"Ref": "Stage"}}
    assert GLOBAL_ENV["STAGE"] == {"Ref": "Stage"}


def test_our_metrics_carry_the_stage_the_alarms_watch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from aws_lambda_powertools.metrics import MetricUnit

    from payments import observability

    monkeypatch.setenv("STAGE", "prod")
    observability.get_metrics.cache_clear()
    try:
        metrics = observability.get_metrics()
        metrics.add_metric(name="ReconcileItemsStuck", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
    finally:
        observability.get_metrics.cache_clear()
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "_aws" in x]
    assert line["stage"] == "prod"
    assert line["service"] == "payments"
    [[dimensions]] = [m["Dimensions"] for m in line["_aws"]["CloudWatchMetrics"]]
    assert set(dimensions) == {"service", "stage"}


def test_every_functions_logs_expire_with_the_retention_parameter() -> None:
    # Lambda's own log groups keep member ids and payment events forever.
    assert TEMPLATE["Globals"]["Function"]["LoggingConfig"]["LogGroup"] == {"Ref": "FunctionLogs"}
    for function in FUNCTIONS.values():
        assert "LoggingConfig" not in function["Properties"]
    group = RESOURCES["FunctionLogs"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
