"""``make reliability``: the large seeded chaos run, the money model, the healing runs, the attack
matrix and a fuzz run, with figures.

Starts its own local stack in this process (a database of its own on the embedded Postgres, or
on ``DATABASE_URL``'s server; the Stripe emulator, the Memberstack stand-in and the Make.com
receiver on free ports; a moto queue for the webhook), prints the figures and writes them to
``benchmarks/reliability.json``. Exits 1 if anything was lost or done twice, or any check
failed.

    python -m tools.reliability [--seed N] [--rounds N] [--actions N] [--fuzz-examples N]
                                [--model-examples N] [--model-steps N] [--healing-seeds N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from tools.db import apply_migrations, database_url
from tools.devserver.routes import ROOT

OUTPUT = ROOT / "benchmarks" / "reliability.json"
STRIPE_KEY = "sk_test_reliability_0123456789"
WEBHOOK_SECRET = "whsec_reliability_0123456789abcdef"
MEMBERSTACK_KEY = "sk_sb_reliability"
APP_ID = "app_reliability"
MAKE_KEY = "make_reliability_key"
ADMIN_ID = "mem_admin_reliability"
DATABASE = "payments_reliability"
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
# Variables of a real deployment that must not leak into the local run.
CLEARED = ("SENTRY_DSN", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "AWS_ENDPOINT_URL")


def _own_database() -> str:
    server = database_url()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DATABASE))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
    url = psycopg.conninfo.make_conninfo(server, dbname=DATABASE)
    apply_migrations(url)
    return url


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("truncate {} restart identity cascade").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in STATE_TABLES)
            )
        )


@contextmanager
def _stack(url: str) -> Iterator[dict[str, Any]]:
    from payments.adapters.queue import get_event_queue, sqs_client
    from payments.settings import get_settings
    from tools.local.make_receiver import start_make_receiver
    from tools.local.memberstack import start_memberstack
    from tools.local.sqs import start_sqs
    from tools.seed_stripe import seed_catalog
    from tools.stripe_emulator import start_emulator

    with ExitStack() as stack:
        emulator = start_emulator(
            port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
        )
        stack.callback(emulator.stop)
        seed_catalog(STRIPE_KEY, emulator.base_url, quiet=True)
        memberstack = start_memberstack(0, secret_key=MEMBERSTACK_KEY, app_id=APP_ID)
        stack.callback(memberstack.stop)
        make = start_make_receiver(0, api_key=MAKE_KEY, echo=False)
        stack.callback(make.stop)
        # moto over HTTP: the webhook signs its own SQS requests, as it does in AWS.
        sqs = stack.enter_context(start_sqs(0))
        for name in CLEARED:
            os.environ.pop(name, None)
        os.environ["AWS_ENDPOINT_URL"] = sqs.endpoint_url
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "POWERTOOLS_TRACE_DISABLED": "1",
                "POWERTOOLS_SERVICE_NAME": "payments",
                "POWERTOOLS_METRICS_NAMESPACE": "Payments",
                "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            }
        )
        queue_url = sqs_client().create_queue(QueueName=f"reliability-{uuid.uuid4().hex[:8]}")[
            "QueueUrl"
        ]
        os.environ.update(
            {
                "STRIPE_SECRET_KEY": STRIPE_KEY,
                "STRIPE_API_BASE": emulator.base_url,
                "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STRIPE_RETRY_BASE_SECONDS": "0.01",
                "DATABASE_URL": url,
                "MEMBERSTACK_SECRET_KEY": MEMBERSTACK_KEY,
                "MEMBERSTACK_APP_ID": APP_ID,
                "MEMBERSTACK_API_BASE": memberstack.url,
                "ADMIN_MEMBER_IDS": ADMIN_ID,
                "CHECKOUT_SUCCESS_URL": "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}",
                "CHECKOUT_CANCEL_URL": "https://site.example/f4",
                "ALLOWED_ORIGINS": "https://site.example",
                "MAKE_WEBHOOK_URL": make.url,
                "MAKE_API_KEY": MAKE_KEY,
                "WEBHOOK_QUEUE_URL": queue_url,
            }
        )
        get_settings.cache_clear()
        get_event_queue.cache_clear()
        # The logger was made on import, before POWERTOOLS_LOG_LEVEL was set: the figures are
        # the output here, not thousands of handler lines.
        from payments.observability import logger

        logger.setLevel("CRITICAL")
        yield {"emulator": emulator, "memberstack": memberstack, "make": make, "queue": queue_url}


def _money_model(env: dict[str, Any], url: str, examples: int, steps: int) -> dict[str, Any]:
    """The money invariants (docs/reliability.md) over generated sequences of clicks,
    payments, deliveries and faults; a violation is shrunk to its shortest sequence."""
    from hypothesis import HealthCheck, settings
    from hypothesis.stateful import run_state_machine_as_test

    from tools.reliability.money_model import ModelEnv, MoneyModel, Tally

    tally = Tally()

    class Model(MoneyModel):
        pass

    Model.env = ModelEnv(
        database_url=url,
        stripe_base=env["emulator"].base_url,
        stripe_key=STRIPE_KEY,
        emulator=env["emulator"].emulator,
        mint_token=env["memberstack"].mint,
        make=env["make"],
        admin_id=ADMIN_ID,
        fresh=lambda: _truncate(url),
    )
    Model.tally = tally
    failure = None
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            Model,
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                # The same sequences on every run, so the figures can be compared.
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except Exception as exc:  # noqa: BLE001 - the shrunk failure is the figure
        failure = f"{type(exc).__name__}: {exc}"[:2000]
    return {
        "examples": examples,
        "max_steps": steps,
        "steps": tally.steps,
        "invariant_checks": tally.invariant_checks,
        "deliveries": tally.deliveries,
        "deliveries_dropped": tally.dropped,
        "duplicates_refunded": tally.duplicates_refunded,
        "quotes_refused": tally.quotes_refused,
        "rules": dict(sorted(tally.rules.items())),
        "violations": [*tally.violations, *([failure] if failure else [])],
        "seconds": round(time.monotonic() - started, 1),
    }


def _healing(parts: dict[str, Any], url: str, seeds: list[int]) -> dict[str, Any]:
    """Each seed's journey on a good day and on a bad one (deliveries dropped, Make.com down,
    Stripe refunds failing) that only the reconciler heals: the two must end equal."""
    from payments.settings import get_settings
    from tools.reliability.healing import HealingFaults, HealingStack, compare, run_journey
    from tools.seed_stripe import seed_catalog
    from tools.stripe_emulator import start_emulator

    faults = HealingFaults(drop_rate=0.35, make_outage=0.5, refund_failures=2)
    totals = {
        "journeys": 0,
        "actions": 0,
        "stripe_events": 0,
        "deliveries_dropped": 0,
        "events_healed": 0,
        "dispatches_drained": 0,
        "most_reconcile_runs_to_heal": 0,
    }
    differences: list[str] = []
    started = time.monotonic()

    def stack() -> tuple[HealingStack, Any]:
        # A fresh emulator and database for each day: the two are compared afterwards.
        emulator = start_emulator(
            port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
        )
        seed_catalog(STRIPE_KEY, emulator.base_url, quiet=True)
        os.environ["STRIPE_API_BASE"] = emulator.base_url
        _truncate(url)
        parts["make"].receiver.clear()
        get_settings.cache_clear()
        built = HealingStack(
            url, emulator, STRIPE_KEY, parts["make"], parts["memberstack"].mint, ADMIN_ID
        )
        return built, emulator

    try:
        for seed in seeds:
            good, good_emulator = stack()
            try:
                clean, _ = run_journey(good, seed, None)
            finally:
                good_emulator.stop()
            bad, bad_emulator = stack()
            try:
                healed, figures = run_journey(bad, seed, faults)
            finally:
                bad_emulator.stop()
            totals["journeys"] += 1
            totals["actions"] += figures.actions
            totals["stripe_events"] += figures.events
            totals["deliveries_dropped"] += figures.deliveries_dropped
            totals["events_healed"] += figures.events_healed
            totals["dispatches_drained"] += figures.dispatches_drained
            totals["most_reconcile_runs_to_heal"] = max(
                totals["most_reconcile_runs_to_heal"], figures.reconcile_runs_to_heal
            )
            differences += [f"seed {seed}: {d}" for d in compare(clean, healed)]
            differences += [f"seed {seed}: {d}" for d in figures.differences]
    finally:
        os.environ["STRIPE_API_BASE"] = parts["emulator"].base_url
        get_settings.cache_clear()
    return {
        **totals,
        "seeds": seeds,
        "faults": {
            "drop_rate": faults.drop_rate,
            "make_outage": faults.make_outage,
            "refund_failures": faults.refund_failures,
        },
        "differences": differences[:50],
        "seconds": round(time.monotonic() - started, 1),
    }


def run(
    seed: int,
    rounds: int,
    actions: int,
    fuzz_examples: int,
    model_examples: int = 100,
    model_steps: int = 50,
    healing_seeds: int = 5,
) -> dict[str, Any]:
    from payments.adapters.queue import sqs_client
    from tools.devserver.lambda_host import LambdaHost
    from tools.devserver.server import ApiServer
    from tools.local.memberstack import generate_signing_key, mint_token
    from tools.reliability.attacks import (
        ATTACKS,
        AttackContext,
        prepare_victim,
        run_attack,
        side_effects,
    )
    from tools.reliability.chaos import ChaosEnv, random_plan, run_plan, summarise
    from tools.reliability.fuzz import fuzz

    url = _own_database()
    figures: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
    }
    with _stack(url) as parts:
        env = ChaosEnv(
            database_url=url,
            stripe_base=parts["emulator"].base_url,
            stripe_key=STRIPE_KEY,
            mint_token=parts["memberstack"].mint,
            make=parts["make"],
            admin_id=ADMIN_ID,
        )

        print(f"delivery chaos: seed {seed}, {rounds} rounds × {actions} actions…", flush=True)
        _truncate(url)
        started = time.monotonic()
        report = run_plan(
            env, random_plan(seed, rounds=rounds, actions_per_round=actions, members=4)
        )
        figures["chaos"] = {**report.figures(), "seconds": round(time.monotonic() - started, 1)}
        figures["chaos"]["problems"] = report.problems[:50]
        print(summarise(report), flush=True)

        print(f"money model: {model_examples} sequences of up to {model_steps} steps…", flush=True)
        _truncate(url)
        figures["money_model"] = _money_model(parts, url, model_examples, model_steps)
        model = figures["money_model"]
        print(
            f"  {model['steps']} steps, {model['invariant_checks']} invariant checks, "
            f"{len(model['violations'])} violations",
            flush=True,
        )

        seeds = [seed + n for n in range(healing_seeds)]
        print(f"self-healing: {len(seeds)} journeys, each on a good and a bad day…", flush=True)
        figures["healing"] = _healing(parts, url, seeds)
        healing = figures["healing"]
        print(
            f"  {healing['deliveries_dropped']} deliveries dropped, "
            f"{healing['events_healed']} events and {healing['dispatches_drained']} dispatches "
            f"healed, {len(healing['differences'])} differences",
            flush=True,
        )

        print(f"attack matrix: {len(ATTACKS)} cases…", flush=True)
        _truncate(url)
        client, queue_url = sqs_client(), parts["queue"]

        def queued() -> int:
            attributes = client.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            return int(attributes["ApproximateNumberOfMessages"])

        memberstack = parts["memberstack"]
        attacker = f"mem_attacker_{uuid.uuid4().hex[:8]}"
        # An administrator's: member tokens are verified locally and pass until they expire.
        revoked = memberstack.mint(ADMIN_ID, ttl_seconds=1234)
        memberstack.revoke(revoked)
        context = AttackContext(
            webhook_secret=WEBHOOK_SECRET,
            member_token=memberstack.mint,
            bad_tokens={
                "expired": memberstack.mint(attacker, ttl_seconds=-60),
                "wrong_audience": mint_token(
                    attacker, app_id="app_someone_else", key=memberstack.standin.key
                ),
                "other_app": mint_token(attacker, app_id=APP_ID, key=generate_signing_key()),
                "revoked": revoked,
            },
            admin_token=memberstack.mint(ADMIN_ID),
            attacker=attacker,
            victim=prepare_victim(env),
            side_effects=side_effects(url, env.stripe_base, queued),
        )
        failed_attacks = []
        for attack in ATTACKS:
            outcome = run_attack(attack, context)
            if outcome.problems:
                failed_attacks.append(f"{attack.name}: {'; '.join(outcome.problems)}")
        groups: dict[str, int] = {}
        for attack in ATTACKS:
            groups[attack.group] = groups.get(attack.group, 0) + 1
        figures["attacks"] = {
            "cases": len(ATTACKS),
            "by_group": groups,
            "refused_without_side_effects": len(ATTACKS) - len(failed_attacks),
            "failures": failed_attacks,
        }
        print(f"  {len(ATTACKS) - len(failed_attacks)} of {len(ATTACKS)} held", flush=True)

        print(f"API fuzzing: {fuzz_examples} examples per operation…", flush=True)
        server = ApiServer(("127.0.0.1", 0), host=LambdaHost(), static_root=None)
        server.start_in_thread()
        try:
            admin = memberstack.mint(ADMIN_ID)
            # The dev server prints a line per request; the figures are what matter here.
            with contextlib.redirect_stdout(io.StringIO()):
                fuzzed = fuzz(server.url, lambda: admin, max_examples=fuzz_examples, seed=seed)
        finally:
            server.shutdown()
            server.server_close()
        figures["fuzz"] = {**fuzzed.figures(), "findings": fuzzed.failures[:50]}
        print(
            f"  {fuzzed.cases} cases over {fuzzed.operations} operations, "
            f"{len(fuzzed.failures)} findings",
            flush=True,
        )
    chaos = figures["chaos"]
    figures["summary"] = {
        "deliveries_processed": chaos["deliveries_processed"],
        "duplicates_absorbed": chaos["duplicates_absorbed"],
        "faults_injected_and_survived": chaos["faults_injected"]["total"],
        "fuzz_cases": figures["fuzz"]["cases"],
        "attack_cases": figures["attacks"]["cases"],
        "money_model_steps": figures["money_model"]["steps"],
        "invariant_violations": len(figures["money_model"]["violations"]),
        "healing_journeys": figures["healing"]["journeys"],
        "deliveries_dropped_and_healed": figures["healing"]["deliveries_dropped"],
        "healed_state_differences": len(figures["healing"]["differences"]),
        "lost_events": chaos["lost_events"] + chaos["dead_lettered"],
        "double_effects": chaos["double_effects"],
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reliability", description=__doc__)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--actions", type=int, default=15, help="actions per round")
    parser.add_argument("--fuzz-examples", type=int, default=60)
    parser.add_argument("--model-examples", type=int, default=100, help="money model sequences")
    parser.add_argument("--model-steps", type=int, default=50, help="steps per sequence")
    parser.add_argument("--healing-seeds", type=int, default=5, help="self-healing journeys")
    args = parser.parse_args(argv)
    figures = run(
        args.seed,
        args.rounds,
        args.actions,
        args.fuzz_examples,
        model_examples=args.model_examples,
        model_steps=args.model_steps,
        healing_seeds=args.healing_seeds,
    )
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    summary = figures["summary"]
    print("\nreliability figures:")
    for name, value in summary.items():
        print(f"  {name:<30} {value}")
    print(f"written to {OUTPUT.relative_to(ROOT)}")
    failed = (
        summary["lost_events"]
        or summary["double_effects"]
        or figures["chaos"]["problems"]
        or figures["attacks"]["failures"]
        or figures["fuzz"]["findings"]
        or summary["invariant_violations"]
        or summary["healed_state_differences"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
