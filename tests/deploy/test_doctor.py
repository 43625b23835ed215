"""The doctor against stand-ins of every outside service: each ✓, and each ✗ with its fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import botocore.exceptions
import psycopg
import pytest
import stripe

from payments.webhooks import handled_event_types
from tests.deploy.conftest import (
    API_URL,
    APP_ID,
    JWT_SECRET,
    STRIPE_KEY,
    Deployment,
    service_role_key,
)
from tools.doctor import __main__ as doctor_cli
from tools.doctor.checks import Check, Probes, run_checks
from tools.doctor.config import Config, from_environment, from_stack
from tools.local.memberstack import mint_token

pytestmark = pytest.mark.integration


def run(
    deployment: Deployment,
    *,
    member_token: str | None = None,
    expect_mode: str | None = None,
    **overrides: str | None,
) -> dict[str, list[Check]]:
    values = {**deployment.values, **overrides}
    config = Config(values={k: v for k, v in values.items() if v is not None})
    probes = Probes(
        config, deployment.http, deployment.aws, member_token=member_token, expect_mode=expect_mode
    )
    results: dict[str, list[Check]] = {}
    for check in run_checks(probes):
        results.setdefault(check.name, []).append(check)
    return results


def only(results: dict[str, list[Check]], name: str) -> Check:
    [check] = results[name]
    return check


def failures(results: dict[str, list[Check]]) -> list[str]:
    return sorted({c.name for checks in results.values() for c in checks if not c.ok})


def stripe_client(deployment: Deployment) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": deployment.stripe.base_url})


@contextmanager
def sql(deployment: Deployment, do: str, undo: str) -> Iterator[None]:
    """Break the database for one test, and repair it after."""
    with psycopg.connect(deployment.database_url, autocommit=True) as conn:
        conn.execute(do)
    try:
        yield
    finally:
        with psycopg.connect(deployment.database_url, autocommit=True) as conn:
            conn.execute(undo)


# --- the healthy deployment ---------------------------------------------------------------


def test_a_deployment_set_up_as_documented_passes_every_check(deployment: Deployment) -> None:
    # Given the services set up as docs/deploy.md says, when the doctor runs
    results = run(deployment)

    # Then every check passes, each service is named, and every catalog price was looked at
    assert failures(results) == []
    assert {
        "Stripe secret key",
        "Stripe webhook endpoint",
        "Stripe billing portal",
        "Supabase",
        "Supabase migrations",
        "Supabase row-level security",
        "Supabase JWT secret",
        "Memberstack secret key",
        "Memberstack app id",
        "Make.com webhook",
        "Sentry DSN",
        "Alarm notifications",
    } <= set(results)
    assert len([n for n in results if n.startswith("Stripe price ")]) == 5
    assert only(results, "Stripe secret key").detail == "accepted (test mode)"


def test_the_command_prints_a_tick_per_check_and_exits_zero(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the deployment's variables in the shell, and Supabase answered by the stand-in
    for name, value in deployment.values.items():
        monkeypatch.setenv(name, value)

    # When the doctor runs as a command
    status = doctor_cli.main([], http=deployment.http)

    # Then it exits 0 and every line is a tick; no secret is printed
    out = capsys.readouterr().out
    assert status == 0
    lines = [line for line in out.splitlines() if line[:1] in ("✓", "✗")]
    assert lines
    assert all(line.startswith("✓") for line in lines)
    for secret in (STRIPE_KEY, JWT_SECRET, deployment.values["MAKE_API_KEY"]):
        assert secret not in out


def test_a_failed_check_makes_the_command_exit_one_and_print_the_fix(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in deployment.values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAKE_API_KEY", "not-the-key")

    status = doctor_cli.main([], http=deployment.http)

    out = capsys.readouterr().out
    assert status == 1
    assert "✗ Make.com webhook: the API key was refused" in out
    assert "    fix: use the key set on the webhook" in out
    assert "not-the-key" not in out


# --- Stripe -------------------------------------------------------------------------------


def test_a_key_stripe_refuses_fails_with_where_to_find_the_key(deployment: Deployment) -> None:
    results = run(deployment, STRIPE_SECRET_KEY="sk_test_revoked_0000")
    check = only(results, "Stripe secret key")
    assert not check.ok
    assert check.detail == "Stripe refused the key"
    assert "Developers → API keys" in (check.fix or "")


def test_something_that_is_not_a_secret_key_fails(deployment: Deployment) -> None:
    check = only(run(deployment, STRIPE_SECRET_KEY="pk_test_publishable"), "Stripe secret key")
    assert not check.ok
    assert "not a Stripe secret key" in check.detail


def test_a_missing_key_fails_naming_the_variable(deployment: Deployment) -> None:
    check = only(run(deployment, STRIPE_SECRET_KEY=None), "Stripe secret key")
    assert not check.ok
    assert check.detail == "not configured: STRIPE_SECRET_KEY"


def test_a_test_mode_key_fails_when_live_mode_is_expected(deployment: Deployment) -> None:
    check = only(run(deployment, expect_mode="live"), "Stripe secret key")
    assert not check.ok
    assert "test-mode key and live mode was expected" in check.detail
    assert only(run(deployment, expect_mode="test"), "Stripe secret key").ok


def test_a_price_that_drifted_or_was_archived_fails_for_that_product(
    deployment: Deployment,
) -> None:
    # Given one price archived in the Dashboard and another replaced at a different amount
    client = stripe_client(deployment)
    prices = {
        p.lookup_key: p for p in client.v1.prices.list(params={"limit": 100}).data if p.lookup_key
    }
    client.v1.prices.update(prices["website_audit_feedback_usd_v1"].id, params={"active": False})
    client.v1.prices.create(
        params={
            "product": "business_plan_builder",
            "unit_amount": 12900,
            "currency": "usd",
            "lookup_key": "business_plan_builder_usd_v1",
            "transfer_lookup_key": True,
        }
    )

    # When the doctor runs, then exactly those two products fail, with the seed as the fix
    results = run(deployment)
    assert failures(results) == [
        "Stripe price business_plan_builder_usd_v1",
        "Stripe price website_audit_feedback_usd_v1",
    ]
    assert only(results, "Stripe price website_audit_feedback_usd_v1").detail == "price inactive"
    drifted = only(results, "Stripe price business_plan_builder_usd_v1")
    assert drifted.detail == "amount 12900 != catalog 9900"
    assert "python -m tools.seed_stripe" in (drifted.fix or "")


def test_a_price_never_created_fails(deployment: Deployment) -> None:
    deployment.stripe.reset()
    results = run(deployment)
    for name in (n for n in results if n.startswith("Stripe price ")):
        assert only(results, name).detail == "no active price with this lookup key"


# --- the webhook endpoint -----------------------------------------------------------------


def _endpoint(deployment: Deployment) -> Any:
    [endpoint] = stripe_client(deployment).v1.webhook_endpoints.list().data
    return endpoint


def test_no_endpoint_for_the_api_url_fails_with_the_seed_command(deployment: Deployment) -> None:
    stripe_client(deployment).v1.webhook_endpoints.delete(_endpoint(deployment).id)
    [check] = run(deployment)["Stripe webhook endpoint"]
    assert not check.ok
    assert check.fix == (
        f"run .venv/bin/python -m tools.seed_stripe --webhook-url {API_URL}/v1/webhooks/stripe"
    )


def test_an_endpoint_missing_a_handled_event_fails_naming_it(deployment: Deployment) -> None:
    wanted = sorted(handled_event_types())
    stripe_client(deployment).v1.webhook_endpoints.update(
        _endpoint(deployment).id,
        params={"enabled_events": [e for e in wanted if e != "charge.refunded"]},  # type: ignore[typeddict-item]
    )
    [check] = run(deployment)["Stripe webhook endpoint"]
    assert not check.ok
    assert check.detail.endswith("does not send charge.refunded")


def test_a_disabled_endpoint_fails(deployment: Deployment) -> None:
    stripe_client(deployment).v1.webhook_endpoints.update(
        _endpoint(deployment).id, params={"disabled": True}
    )
    [check] = run(deployment)["Stripe webhook endpoint"]
    assert not check.ok
    assert check.detail.endswith("is disabled")


def test_an_endpoint_sending_every_event_passes(deployment: Deployment) -> None:
    stripe_client(deployment).v1.webhook_endpoints.update(
        _endpoint(deployment).id,
        params={"enabled_events": ["*"]},  # type: ignore[typeddict-item]
    )
    [check] = run(deployment)["Stripe webhook endpoint"]
    assert check.ok


def test_two_endpoints_for_one_url_fail(deployment: Deployment) -> None:
    stripe_client(deployment).v1.webhook_endpoints.create(
        params={
            "url": f"{API_URL}/v1/webhooks/stripe",
            "enabled_events": ["*"],  # type: ignore[list-item]
        }
    )
    checks = run(deployment)["Stripe webhook endpoint"]
    assert [c.ok for c in checks] == [True, True, False]
    assert "2 endpoints share" in checks[-1].detail


# --- the Billing Portal's configuration ---------------------------------------------------

PORTAL_FIX = "run .venv/bin/python -m tools.seed_stripe with this key (it creates or repairs it)"


def _portal_configuration(deployment: Deployment) -> Any:
    configs = stripe_client(deployment).v1.billing_portal.configurations.list().data
    [ours] = [c for c in configs if "payments_service" in (c.to_dict()["metadata"] or {})]
    return ours


def test_the_seeded_portal_configuration_passes_naming_what_it_allows(
    deployment: Deployment,
) -> None:
    check = only(run(deployment), "Stripe billing portal")
    assert check.ok
    assert check.detail == (
        f"{_portal_configuration(deployment).id}: card updates and invoices only "
        "(subscription update, cancel and pause off)"
    )


@pytest.mark.parametrize(
    ("feature", "settings"),
    [
        (
            "subscription_update",
            {
                "enabled": True,
                "default_allowed_updates": ["price"],
                "products": [{"product": "growth_monthly", "prices": ["price_x"]}],
            },
        ),
        ("subscription_cancel", {"enabled": True, "mode": "immediately"}),
    ],
)
def test_a_portal_configuration_allowing_plan_changes_or_cancel_fails_with_the_seed_fix(
    deployment: Deployment, feature: str, settings: dict[str, Any]
) -> None:
    # Given the service's configuration edited to let members change plan, or cancel
    config = _portal_configuration(deployment)
    stripe_client(deployment).v1.billing_portal.configurations.update(
        config.id,
        params={"features": {feature: settings}},  # type: ignore[dict-item]
    )

    # When the doctor runs, then the check fails naming the feature, with the fix
    check = only(run(deployment), "Stripe billing portal")
    assert not check.ok
    assert check.detail.startswith(f"{config.id} allows {feature}:")
    assert check.fix == PORTAL_FIX


def test_no_portal_configuration_of_the_service_fails(deployment: Deployment) -> None:
    # Given an account whose only configuration is the default one, saved in the Dashboard
    client = stripe_client(deployment)
    client.v1.billing_portal.configurations.update(
        _portal_configuration(deployment).id, params={"metadata": {"payments_service": ""}}
    )
    customer = client.v1.customers.create()
    client.v1.billing_portal.sessions.create(params={"customer": customer.id})

    check = only(run(deployment), "Stripe billing portal")
    assert not check.ok
    assert check.detail.startswith("no configuration of the service")
    assert check.fix == PORTAL_FIX


def test_an_inactive_portal_configuration_fails(deployment: Deployment) -> None:
    config = _portal_configuration(deployment)
    stripe_client(deployment).v1.billing_portal.configurations.update(
        config.id, params={"active": False}
    )
    check = only(run(deployment), "Stripe billing portal")
    assert not check.ok
    assert (
        check.detail
        == f"the service's configuration {config.id} is inactive (the portal is closed)"
    )


def test_a_portal_without_card_updates_fails(deployment: Deployment) -> None:
    config = _portal_configuration(deployment)
    stripe_client(deployment).v1.billing_portal.configurations.update(
        config.id, params={"features": {"payment_method_update": {"enabled": False}}}
    )
    check = only(run(deployment), "Stripe billing portal")
    assert not check.ok
    assert check.detail == f"{config.id} does not offer payment_method_update"


def test_without_the_api_url_the_endpoint_cannot_be_checked(deployment: Deployment) -> None:
    [check] = run(deployment, API_URL=None)["Stripe webhook endpoint"]
    assert not check.ok
    assert "--stack" in (check.fix or "")


# --- Supabase -----------------------------------------------------------------------------


def test_supabase_unreachable_fails_with_where_to_find_the_url(deployment: Deployment) -> None:
    check = only(run(deployment, SUPABASE_URL="http://127.0.0.1:9"), "Supabase")
    assert not check.ok
    assert "unreachable" in check.detail
    assert "Project URL" in (check.fix or "")


def test_a_service_key_signed_by_another_project_fails(deployment: Deployment) -> None:
    other = service_role_key("another-project-jwt-secret-32-characters-x")
    check = only(run(deployment, SUPABASE_SERVICE_ROLE_KEY=other), "Supabase")
    assert not check.ok
    assert check.detail == "the service key was refused"


def test_migrations_not_applied_fail_naming_them(deployment: Deployment) -> None:
    # Given a database whose record lacks the latest migration
    latest = "20261201120000"
    with sql(
        deployment,
        f"delete from local_schema_migrations where version = '{latest}'",
        f"insert into local_schema_migrations (version) values ('{latest}')",
    ):
        check = only(run(deployment), "Supabase migrations")
    assert not check.ok
    assert check.detail == f"not applied: {latest}"
    assert "supabase db push" in (check.fix or "")


def test_a_database_without_the_status_function_fails_as_not_migrated(
    deployment: Deployment,
) -> None:
    migration = "supabase/migrations/20261201120000_schema_status.sql"
    with sql(deployment, "drop function public.schema_status()", open(migration).read()):
        results = run(deployment)
    assert only(results, "Supabase").ok
    check = only(results, "Supabase migrations")
    assert not check.ok
    assert check.detail == "schema_status() is missing"


def test_a_table_without_row_level_security_fails_naming_it(deployment: Deployment) -> None:
    with sql(
        deployment,
        "alter table refunds disable row level security",
        "alter table refunds enable row level security",
    ):
        check = only(run(deployment), "Supabase row-level security")
    assert not check.ok
    assert check.detail == "off on refunds"


def test_a_jwt_secret_of_another_project_fails(deployment: Deployment) -> None:
    results = run(deployment, SUPABASE_JWT_SECRET="another-project-jwt-secret-32-characters-x")
    check = only(results, "Supabase JWT secret")
    assert not check.ok
    assert check.detail == "a member token signed with it was refused"
    assert "JWT Keys" in (check.fix or "")


def test_a_member_probe_that_reads_other_rows_fails(deployment: Deployment) -> None:
    # Given a policy that lets any member read every payment log, and a row of someone
    with sql(
        deployment,
        "create policy leak on payment_logs for select to authenticated using (true);"
        "insert into payment_logs (event_type, user_id, status) values ('x', 'mem_a', 'paid')",
        "drop policy leak on payment_logs; truncate payment_logs",
    ):
        check = only(run(deployment), "Supabase JWT secret")
    assert not check.ok
    assert check.detail == "a made-up member can read rows of payment_logs"


def test_a_member_allowed_a_service_function_fails(deployment: Deployment) -> None:
    with sql(
        deployment,
        "grant execute on function public.schema_status() to authenticated",
        "revoke execute on function public.schema_status() from authenticated",
    ):
        check = only(run(deployment), "Supabase JWT secret")
    assert not check.ok
    assert "service-only function" in check.detail


# --- Memberstack --------------------------------------------------------------------------


def test_a_memberstack_key_refused_fails_with_where_to_find_it(deployment: Deployment) -> None:
    check = only(run(deployment, MEMBERSTACK_SECRET_KEY="sk_sb_wrong"), "Memberstack secret key")
    assert not check.ok
    assert check.detail == "Memberstack refused the key"
    assert "Dev Tools" in (check.fix or "")


def test_memberstack_unreachable_fails(deployment: Deployment) -> None:
    check = only(
        run(deployment, MEMBERSTACK_API_BASE="http://127.0.0.1:9"), "Memberstack secret key"
    )
    assert not check.ok
    assert "unreachable" in check.detail


def test_a_malformed_app_id_fails(deployment: Deployment) -> None:
    check = only(run(deployment, MEMBERSTACK_APP_ID="payments"), "Memberstack app id")
    assert not check.ok
    assert check.detail == "not an app id (app_…)"


def test_a_real_member_token_confirms_the_app_id(deployment: Deployment) -> None:
    token = deployment.memberstack.mint("mem_owner")
    check = only(run(deployment, member_token=token), "Memberstack app id")
    assert check.ok
    assert check.detail == f"{APP_ID}, the audience of a real member token"


def test_a_member_token_of_another_app_fails(deployment: Deployment) -> None:
    token = mint_token("mem_owner", app_id="app_other", key=deployment.memberstack.standin.key)
    check = only(run(deployment, member_token=token), "Memberstack app id")
    assert not check.ok
    assert check.detail == "the member token belongs to another app"


def test_an_expired_member_token_is_reported_as_refused(deployment: Deployment) -> None:
    token = deployment.memberstack.standin.mint("mem_owner", ttl_seconds=-10)
    check = only(run(deployment, member_token=token), "Memberstack app id")
    assert not check.ok
    assert check.detail == "the --member-token given was refused"


# --- Make.com, Sentry, alarms -------------------------------------------------------------


def test_make_receives_a_probe_its_router_ignores(deployment: Deployment) -> None:
    deployment.make.receiver.clear()
    assert only(run(deployment), "Make.com webhook").ok
    [probe] = deployment.make.received
    assert probe["kind"] == "doctor_probe"
    assert probe["idempotency_key"].startswith("doctor-probe-")


def test_a_make_key_refused_fails(deployment: Deployment) -> None:
    check = only(run(deployment, MAKE_API_KEY="wrong"), "Make.com webhook")
    assert not check.ok
    assert check.detail == "the API key was refused"


def test_make_unreachable_fails(deployment: Deployment) -> None:
    check = only(run(deployment, MAKE_WEBHOOK_URL="http://127.0.0.1:9/hook"), "Make.com webhook")
    assert not check.ok
    assert check.detail.startswith("unreachable")


def test_make_answering_an_error_fails_with_its_status(deployment: Deployment) -> None:
    deployment.make.inject_fault(410, 1)
    check = only(run(deployment), "Make.com webhook")
    assert not check.ok
    assert check.detail == "no scenario listens there (HTTP 410)"


@pytest.mark.parametrize(
    "dsn", ["sentry.io/123", "https://ingest.sentry.io/4505", "https://key@ingest.sentry.io/x"]
)
def test_a_malformed_sentry_dsn_fails(deployment: Deployment, dsn: str) -> None:
    check = only(run(deployment, SENTRY_DSN=dsn), "Sentry DSN")
    assert not check.ok
    assert "Client Keys" in (check.fix or "")


def test_no_sentry_dsn_passes_and_says_reporting_is_off(deployment: Deployment) -> None:
    check = only(run(deployment, SENTRY_DSN=None), "Sentry DSN")
    assert check.ok
    assert check.detail.startswith("not set")


def test_a_topic_nobody_subscribed_to_fails(deployment: Deployment) -> None:
    topic = deployment.aws("sns").create_topic(Name="payments-alarms-empty")["TopicArn"]
    check = only(run(deployment, ALARM_TOPIC_ARN=topic), "Alarm notifications")
    assert not check.ok
    assert check.detail == "nobody receives alarms"
    assert "AlarmEmail" in (check.fix or "")


def test_a_topic_that_cannot_be_read_fails(deployment: Deployment) -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    check = only(run(deployment, ALARM_TOPIC_ARN=topic), "Alarm notifications")
    assert not check.ok
    assert check.detail.startswith("the topic could not be read")


def test_without_the_topic_the_alarms_cannot_be_checked(deployment: Deployment) -> None:
    check = only(run(deployment, ALARM_TOPIC_ARN=None), "Alarm notifications")
    assert not check.ok
    assert check.detail == "the alarm topic is unknown"


# --- where the configuration comes from ---------------------------------------------------


def _store_secrets(deployment: Deployment, names: list[str]) -> dict[str, str]:
    manager = deployment.aws("secretsmanager")
    arns = {}
    for name in names:
        created = manager.create_secret(
            Name=f"payments-test-{id(deployment)}/{name}", SecretString=deployment.values[name]
        )
        arns[f"{name}_ARN"] = created["ARN"]
    return arns


SECRET_NAMES = [
    "STRIPE_SECRET_KEY",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_JWT_SECRET",
    "MEMBERSTACK_SECRET_KEY",
    "MAKE_WEBHOOK_URL",
    "MAKE_API_KEY",
]


def test_secrets_named_by_arn_are_read_from_secrets_manager(deployment: Deployment) -> None:
    # Given the shell holds only where each secret is kept, as a deployed function does
    arns = _store_secrets(deployment, SECRET_NAMES)
    plain = {k: v for k, v in deployment.values.items() if k not in SECRET_NAMES}

    # When the configuration is read, then each secret has its value
    config = from_environment({**plain, **arns})
    assert config.problems == []
    assert {name: config.get(name) for name in SECRET_NAMES} == {
        name: deployment.values[name] for name in SECRET_NAMES
    }


def test_a_secret_that_cannot_be_read_fails_the_configuration(deployment: Deployment) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payments/NOPE-abcdef"
    config = from_environment({"STRIPE_SECRET_KEY_ARN": missing})
    probes = Probes(config, deployment.http, deployment.aws)
    [first, *_] = run_checks(probes)
    assert first.name == "Configuration"
    assert not first.ok
    assert "STRIPE_SECRET_KEY could not be read" in first.detail


def _stack_template(env: dict[str, str], topic: str) -> str:
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        },
    }

    def function(variables: dict[str, str]) -> dict[str, Any]:
        return {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Runtime": "python3.11",
                "Handler": "app.lambda_handler",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Code": {"ZipFile": "def lambda_handler(event, context): pass"},
                "Environment": {"Variables": variables},
            },
        }

    # Two functions, each with part of the configuration, as the real template splits it.
    names = sorted(env)
    half = len(names) // 2
    return json.dumps(
        {
            "Resources": {
                "Role": role,
                "CheckoutFunction": function({n: env[n] for n in names[:half]}),
                "WorkerFunction": function({n: env[n] for n in names[half:]}),
            },
            "Outputs": {
                "ApiUrl": {"Value": API_URL},
                "AlarmTopicArn": {"Value": topic},
            },
        }
    )


def _create_stack(deployment: Deployment, template: str) -> str:
    """Create a stack in moto's server; its name. moto's server has once answered a bare 500
    (an error page, not an AWS error) to this call under load: that is the stand-in failing,
    not the doctor, so the setup tries again, under a new name, up to three times."""
    cloudformation = deployment.aws("cloudformation")
    for attempt in range(3):
        name = f"payments-doctor-{id(deployment)}-{attempt}"
        try:
            cloudformation.create_stack(
                StackName=name, TemplateBody=template, Capabilities=["CAPABILITY_IAM"]
            )
            return name
        except botocore.exceptions.ResponseParserError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_a_stack_is_read_from_its_functions_environment_and_passes(
    deployment: Deployment,
) -> None:
    # Given a stack whose functions hold secret ARNs and whose outputs name the API and topic
    arns = _store_secrets(deployment, SECRET_NAMES)
    env = {
        k: v
        for k, v in deployment.values.items()
        if k not in SECRET_NAMES and k not in ("API_URL", "ALARM_TOPIC_ARN")
    }
    env.update(arns)
    name = _create_stack(deployment, _stack_template(env, deployment.values["ALARM_TOPIC_ARN"]))

    # When the doctor reads the stack
    config = from_stack(name, deployment.aws)

    # Then it has the functions' configuration, secrets resolved, and everything passes
    assert config.problems == []
    assert config.get("STRIPE_SECRET_KEY") == STRIPE_KEY
    assert config.get("API_URL") == API_URL
    assert config.source == f"stack {name} (2 functions)"
    probes = Probes(config, deployment.http, deployment.aws)
    assert [c.name for c in run_checks(probes) if not c.ok] == []


def test_a_stack_that_does_not_exist_fails_without_a_traceback(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert doctor_cli.main(["--stack", "payments-nope", "--region", "us-east-1"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("✗ Stack payments-nope: could not be read")
    assert "Traceback" not in out
