"""``make bench``: what a buyer feels, cold starts, throughput and size, each beside its target.

* **Journey under realistic delays** (``latency_model``): each stand-in delays every call
  (Stripe 250 ms, Memberstack 150 ms, a database RPC 30 ms, SQS 20 ms, Make.com 200 ms by
  default; ``--delay stripe=300``), and each step a buyer or member takes is timed through the
  real handlers: p50 / p99, the calls of each kind it waited for, and its ratio to its floor
  (one Stripe round trip, one SQS send).
* **Cold starts**: the whole process (interpreter start, imports, first request) of each
  function beside the naive baseline (``naive_handler``: every SDK imported eagerly), in a
  virtualenv holding only the runtime requirements, with the imports that dominate what is left.
* **Loopback figures**: webhook and checkout warm latency with every upstream answering at once
  (the service's own CPU), worker throughput on the embedded Postgres, package size.

Every figure is printed beside its target; the run exits 1 when a target is missed. Writes
``benchmarks/latest.json``.

    python -m tools.bench [--quick] [--skip-size] [--only SECTION ...] [--delay KIND=MS ...]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "benchmarks" / "latest.json"
STRIPE_KEY = "sk_test_bench_0123456789"
WEBHOOK_SECRET = "whsec_bench_secret_0123456789abcdef"
MEMBERSTACK_KEY = "sk_sb_bench"
APP_ID = "app_bench"
MAKE_KEY = "make_bench_key"
ADMIN = "mem_bench_admin"


# --- statistics ---------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max, interquartile range) of repeated measurements."""
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "iqr": quartiles[2] - quartiles[0],
        "n": len(ordered),
    }


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


# --- the local stack ----------------------------------------------------------------------


@contextmanager
def local_stack() -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """Start everything the functions call, on loopback; yield their environment and the
    running stand-ins (to give them latencies)."""
    import psycopg
    from psycopg import sql

    from tools.db import apply_migrations, start_embedded
    from tools.local.make_receiver import start_make_receiver
    from tools.local.memberstack import start_memberstack
    from tools.local.sqs import create_queues, start_sqs
    from tools.seed_stripe import seed_catalog
    from tools.stripe_emulator import start_emulator

    with ExitStack() as stack:
        db = start_embedded(ROOT / ".local" / "pgbench", stop_at_exit=True)
        apply_migrations(db)
        # Every run starts empty: the emulator below is new, so no stored customer
        # mapping or purchase of an earlier run may point into it.
        with psycopg.connect(db, autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "select tablename from pg_tables where schemaname = 'public'"
                    " and tablename <> 'local_schema_migrations'"
                )
            ]
            conn.execute(
                sql.SQL("truncate {} restart identity cascade").format(
                    sql.SQL(", ").join(map(sql.Identifier, tables))
                )
            )
        emulator = start_emulator(
            port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
        )
        stack.callback(emulator.stop)
        seed_catalog(STRIPE_KEY, emulator.base_url, quiet=True)
        memberstack = start_memberstack(0, secret_key=MEMBERSTACK_KEY, app_id=APP_ID)
        stack.callback(memberstack.stop)
        make = start_make_receiver(0, api_key=MAKE_KEY, echo=False)
        stack.callback(make.stop)
        sqs = start_sqs(0)
        stack.callback(sqs.stop)
        queue_url, _ = create_queues(sqs.endpoint_url, name=f"bench-{os.getpid()}")
        env = {
            "DATABASE_URL": db,
            "STRIPE_SECRET_KEY": STRIPE_KEY,
            "STRIPE_API_BASE": emulator.base_url,
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "MEMBERSTACK_SECRET_KEY": MEMBERSTACK_KEY,
            "MEMBERSTACK_APP_ID": APP_ID,
            "MEMBERSTACK_API_BASE": memberstack.url,
            "ADMIN_MEMBER_IDS": ADMIN,
            "MAKE_WEBHOOK_URL": make.url,
            "MAKE_API_KEY": MAKE_KEY,
            "WEBHOOK_QUEUE_URL": queue_url,
            "AWS_ENDPOINT_URL": sqs.endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "CHECKOUT_SUCCESS_URL": "https://site.example/f5?session_id={CHECKOUT_SESSION_ID}",
            "CHECKOUT_CANCEL_URL": "https://site.example/f4",
            "ALLOWED_ORIGINS": "https://site.example",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "Payments",
            "POWERTOOLS_SERVICE_NAME": "payments",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "BENCH_MEMBERSTACK_URL": memberstack.url,
        }
        env["_token"] = memberstack.mint("mem_bench_member")
        env["_admin_token"] = memberstack.mint(ADMIN)
        yield env, {"emulator": emulator, "memberstack": memberstack, "make": make}


def sign(body: str, secret: str = WEBHOOK_SECRET) -> str:
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def sample_event(function: str, env: dict[str, str]) -> dict[str, Any]:
    """``events/<function>.json`` with a live token and a fresh signature."""
    event: dict[str, Any] = json.loads((ROOT / "events" / f"{function}.json").read_text())
    headers = event.get("headers") or {}
    if "authorization" in headers:
        admin = "/refunds" in event.get("rawPath", "") or "/admin/" in event.get("rawPath", "")
        headers["authorization"] = f"Bearer {env['_admin_token' if admin else '_token']}"
    if "stripe-signature" in headers:
        headers["stripe-signature"] = sign(event["body"])
    return event


# --- cold starts --------------------------------------------------------------------------


def functions() -> list[str]:
    from tools.devserver.routes import function_names

    return sorted(
        r["Properties"]["CodeUri"].strip("/").split("/")[-1] for r in function_names().values()
    )


def runtime_python() -> str:
    """An interpreter with only the runtime requirements, like a deployed function.

    The development virtualenv also holds test tools, and some runtime packages import
    more when those are present (httpx loads rich for its command line): cold starts
    measured there would not be the Lambda's.
    """
    venv = ROOT / ".local" / "bench-runtime"
    requirements = (ROOT / "requirements.txt").read_bytes()
    stamp = venv / f".installed-{hashlib.sha256(requirements).hexdigest()[:16]}"
    python = venv / "bin" / "python"
    if not stamp.exists():
        print("  creating the runtime-only virtualenv (first run only)…", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.txt")],
            check=True,
            capture_output=True,
        )
        stamp.touch()
    return str(python)


def _child_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **{k: v for k, v in env.items() if not k.startswith("_")},
        "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}",
        "PYTHONDONTWRITEBYTECODE": "0",
    }


def _spawn(python: str, args: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    """Run a process; its wall time from spawn (``time.monotonic``, ms), stdout and stderr."""
    started = time.monotonic()
    out = subprocess.run(
        [python, *args], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return started, out.stdout, out.stderr


def import_breakdown(stderr: str, top: int = 5) -> list[dict[str, Any]]:
    """``-X importtime`` output summed by top-level package (each module's own time)."""
    totals: Counter[str] = Counter()
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _cumulative, name = line.removeprefix("import time:").split("|")
        root = name.strip().split(".")[0]
        if root in ("tools", "encodings", "site"):
            continue  # the bench's own launcher and the interpreter's start-up
        totals["payments, functions" if root in ("payments", "functions") else root] += int(own)
    return [{"package": name, "ms": round(us / 1000, 1)} for name, us in totals.most_common(top)]


def cold_starts(env: dict[str, str], repeats: int, only: list[str] | None = None) -> dict[str, Any]:
    """Whole-process cold starts: spawn, import, serve the first event, in a runtime-only venv."""
    from tools.bench.sqs_stub import SqsStub

    # The webhook's one SQS call goes to the stub, which answers at once: moto's server would
    # put its own (slow, shared-process) handling into the webhook's figure.
    stub = SqsStub()
    child_env = _child_env(env)
    webhook_env = {
        **child_env,
        "AWS_ENDPOINT_URL": stub.url,
        "WEBHOOK_QUEUE_URL": f"{stub.url}/000000000000/bench-cold",
    }
    try:
        return _cold_starts(env, child_env, webhook_env, repeats, only)
    finally:
        stub.stop()


def _cold_starts(
    env: dict[str, str],
    child_env: dict[str, str],
    webhook_env: dict[str, str],
    repeats: int,
    only: list[str] | None,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    python = runtime_python()
    empty = []
    for _ in range(repeats):
        started = time.monotonic()
        _spawn(python, ["-c", "pass"], child_env)
        empty.append((time.monotonic() - started) * 1000)
    results["_empty_interpreter_ms"] = summary(empty)
    with tempfile.TemporaryDirectory() as tmp:
        for function in functions():
            if only and function not in only:
                continue
            path = Path(tmp) / f"{function}.json"
            function_env = {
                **(webhook_env if function == "webhook" else child_env),
                "BENCH_FUNCTION": function,
            }
            samples: dict[str, list[float]] = {"ours": [], "naive": []}
            answered: dict[str, list[float]] = {"ours": [], "naive": []}
            cpu: dict[str, list[float]] = {"ours": [], "naive": []}
            cpu_answered: dict[str, list[float]] = {"ours": [], "naive": []}
            for _ in range(repeats):
                # Alternate the variants so drift on the machine hits both alike.
                for variant, module in (
                    ("ours", f"functions.{function}.app"),
                    ("naive", "tools.bench.naive_handler"),
                ):
                    path.write_text(json.dumps(sample_event(function, env)))
                    spawned, stdout, _ = _spawn(
                        python, ["-m", "tools.bench.cold_start", str(path), module], function_env
                    )
                    measured = json.loads(stdout.strip().splitlines()[-1])
                    samples[variant].append((measured["imported_at"] - spawned) * 1000)
                    answered[variant].append((measured["answered_at"] - spawned) * 1000)
                    cpu[variant].append(measured["cpu_at_import_s"] * 1000)
                    cpu_answered[variant].append(measured["cpu_at_answer_s"] * 1000)
                    if measured["status"] is not None and measured["status"] >= 500:
                        raise RuntimeError(f"{function} answered {measured['status']}")
            path.write_text(json.dumps(sample_event(function, env)))
            _, _, stderr = _spawn(
                python,
                [
                    "-X",
                    "importtime",
                    "-m",
                    "tools.bench.cold_start",
                    str(path),
                    f"functions.{function}.app",
                ],
                function_env,
            )
            ours, naive = summary(samples["ours"]), summary(samples["naive"])
            first_ours, first_naive = summary(answered["ours"]), summary(answered["naive"])
            cpu_ours, cpu_naive = summary(cpu["ours"]), summary(cpu["naive"])
            results[function] = {
                # Whole-process cold import: spawn until the handler module is imported. The
                # target is on its CPU time, which other processes on this shared machine do
                # not inflate; the wall time is reported beside it.
                "cpu_ms": cpu_ours,
                "cpu_naive_ms": cpu_naive,
                "ratio": cpu_ours["median"] / cpu_naive["median"],
                "ours_ms": ours,
                "naive_ms": naive,
                "wall_ratio": ours["median"] / naive["median"],
                "first_answer_cpu_ms": summary(cpu_answered["ours"]),
                "first_answer_cpu_ratio": (
                    statistics.median(cpu_answered["ours"])
                    / statistics.median(cpu_answered["naive"])
                ),
                # Whole-process first answer: the same, plus the first request (lazy imports,
                # connections, one call to each upstream on loopback).
                "first_answer_ours_ms": first_ours,
                "first_answer_naive_ms": first_naive,
                "first_answer_ratio": first_ours["median"] / first_naive["median"],
                "largest_imports": import_breakdown(stderr),
            }
    return results


# --- warm latency -------------------------------------------------------------------------


def _apply_env(env: dict[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith("_"):
            os.environ[name] = value
    from payments.settings import get_settings

    get_settings.cache_clear()


def padded_event(size: int) -> str:
    """A signed-size ``checkout.session.completed`` event built from Stripe's fixture."""
    from tools.stripe_emulator.objects import API_VERSION, fixture

    session = fixture("checkout.session")
    session.update(id=f"cs_test_bench{random.getrandbits(40):x}", metadata={"product": "x"})
    envelope = fixture("event")
    envelope.update(
        id=f"evt_bench{random.getrandbits(48):x}",
        type="checkout.session.completed",
        api_version=API_VERSION,
        created=int(time.time()),
        data={"object": session},
    )
    body = json.dumps(envelope)
    filler = max(0, size - len(body) - 20)
    session["metadata"]["padding"] = "x" * filler
    return json.dumps(envelope)


def timed(call: Callable[[], Any], iterations: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def webhook_latency(env: dict[str, str], iterations: int, repeats: int) -> dict[str, Any]:
    from tools.bench.sqs_stub import SqsStub
    from tools.devserver.events import http_event
    from tools.devserver.lambda_host import FakeLambdaContext

    stub = SqsStub()
    _apply_env(
        {
            **env,
            "AWS_ENDPOINT_URL": stub.url,
            "WEBHOOK_QUEUE_URL": f"{stub.url}/000000000000/bench-webhook",
        }
    )
    handler = __import__("functions.webhook.app", fromlist=["lambda_handler"]).lambda_handler
    results: dict[str, Any] = {}
    for size in (2 * 1024, 20 * 1024):
        body = padded_event(size)
        p50s, p99s = [], []
        for _ in range(repeats):

            def call(body: str = body) -> None:
                event = http_event(
                    method="POST",
                    path="/v1/webhooks/stripe",
                    route_key="POST /v1/webhooks/stripe",
                    headers=[
                        ("content-type", "application/json"),
                        ("stripe-signature", sign(body)),
                    ],
                    body=body.encode(),
                )
                result = handler(event, FakeLambdaContext("webhook"))
                if result["statusCode"] != 200:
                    raise RuntimeError(f"webhook answered {result['statusCode']}")

            samples = timed(call, iterations)
            p50s.append(percentile(samples, 50))
            p99s.append(percentile(samples, 99))
        results[f"{size // 1024}KB"] = {
            "bytes": len(body),
            "p50_ms": summary(p50s),
            "p99_ms": summary(p99s),
        }
    stub.stop()
    _apply_env(env)
    return results


def checkout_latency(env: dict[str, str], iterations: int, repeats: int) -> dict[str, Any]:
    from tools.devserver.events import http_event
    from tools.devserver.lambda_host import FakeLambdaContext

    _apply_env(env)
    handler = __import__("functions.create_checkout.app", fromlist=["x"]).lambda_handler
    counter = iter(range(10**9))
    p50s, p99s = [], []

    def call() -> None:
        event = http_event(
            method="POST",
            path="/v1/checkout/sessions",
            route_key="POST /v1/checkout/sessions",
            headers=[
                ("content-type", "application/json"),
                ("authorization", f"Bearer {env['_token']}"),
                ("idempotency-key", f"bench-{os.getpid()}-{next(counter)}"),
            ],
            body=b'{"product": "business_plan_builder"}',
        )
        result = handler(event, FakeLambdaContext("create_checkout"))
        if result["statusCode"] != 201:
            raise RuntimeError(f"checkout answered {result['statusCode']}: {result['body']}")

    for _ in range(repeats):
        samples = timed(call, iterations, warmup=5)
        p50s.append(percentile(samples, 50))
        p99s.append(percentile(samples, 99))
    return {"p50_ms": summary(p50s), "p99_ms": summary(p99s)}


# --- worker throughput --------------------------------------------------------------------


def journey_events(purchases: int) -> list[str]:
    """What Stripe sends for paid one-time purchases: session completed, intent succeeded,
    charge succeeded (acknowledged and ignored)."""
    from tools.stripe_emulator.objects import API_VERSION, fixture

    bodies = []
    # Members of their own: a member of an earlier call already holding the track would make
    # these purchases duplicates (refunded, at Stripe, which knows none of these payments).
    tag = f"{random.getrandbits(32):08x}"
    for n in range(purchases):
        member = f"mem_bench_{tag}_{n:05d}"
        pi = f"pi_bench{n:05d}{random.getrandbits(32):x}"
        session = fixture("checkout.session")
        session.update(
            id=f"cs_test_bench{n:05d}{random.getrandbits(32):x}",
            payment_intent=pi,
            amount_total=9900,
            currency="usd",
            customer=f"cus_bench{n:05d}",
            client_reference_id=member,
            payment_status="paid",
            status="complete",
            mode="payment",
            metadata={"member_id": member, "product": "business_plan_builder"},
        )
        intent = fixture("payment_intent")
        intent.update(
            id=pi,
            amount=9900,
            amount_received=9900,
            currency="usd",
            status="succeeded",
            metadata={"member_id": member},
        )
        charge = fixture("charge")
        charge.update(id=f"ch_bench{n:05d}", payment_intent=pi, amount=9900)
        for kind, obj in (
            ("checkout.session.completed", session),
            ("payment_intent.succeeded", intent),
            ("charge.succeeded", charge),
        ):
            envelope = fixture("event")
            envelope.update(
                id=f"evt_bench{random.getrandbits(64):x}",
                type=kind,
                api_version=API_VERSION,
                created=int(time.time()),
                data={"object": obj},
            )
            bodies.append(json.dumps(envelope))
    return bodies


def worker_throughput(env: dict[str, str], purchases: int, repeats: int) -> dict[str, Any]:
    import psycopg

    from tools.devserver.lambda_host import FakeLambdaContext
    from tools.local.sqs import build_sqs_event

    _apply_env(env)
    handler = __import__("functions.webhook_worker.app", fromlist=["x"]).lambda_handler
    rates = []
    for _ in range(repeats):
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("truncate payment_logs, processed_events, purchases, outbox, customers")
        unique = journey_events(purchases)
        duplicates = random.sample(unique, k=len(unique) // 4)  # 20 % of all deliveries
        deliveries = unique + duplicates
        random.shuffle(deliveries)
        batches = []
        for start in range(0, len(deliveries), 10):
            messages = [
                {
                    "MessageId": f"m{start + i}",
                    "ReceiptHandle": f"r{start + i}",
                    "Body": body,
                    "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0"},
                    "MessageAttributes": {
                        "stripe_event_id": {
                            "DataType": "String",
                            "StringValue": json.loads(body)["id"],
                        }
                    },
                    "MD5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
                }
                for i, body in enumerate(deliveries[start : start + 10])
            ]
            arn = "arn:aws:sqs:us-east-1:000000000000:bench"
            batches.append(build_sqs_event(messages, arn))  # type: ignore[arg-type]
        started = time.perf_counter()
        for batch in batches:
            result = handler(batch, FakeLambdaContext("webhook_worker", timeout_seconds=30))
            if result.get("batchItemFailures"):
                raise RuntimeError(f"worker failed messages: {result['batchItemFailures']}")
        elapsed = time.perf_counter() - started
        rates.append(len(deliveries) / elapsed)
    return {
        "events_per_s": summary(rates),
        "deliveries_per_run": len(deliveries),
        "duplicate_share": round(len(duplicates) / len(deliveries), 2),
        "batch_size": 10,
    }


# --- package size -------------------------------------------------------------------------


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def package_sizes() -> dict[str, Any]:
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    build = ROOT / ".local" / "bench-build"
    subprocess.run(
        [str(sam), "build", "--template", str(ROOT / "template.yaml"), "--build-dir", str(build)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    layer = tree_size(build / "SharedLayer")
    per_function = {
        d.name: tree_size(d) + layer
        for d in sorted(build.iterdir())
        if d.is_dir() and d.name.endswith("Function")
    }
    bundle = ROOT / ".local" / "bench-bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(bundle),
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        check=True,
        capture_output=True,
    )
    shutil.copytree(ROOT / "shared" / "payments", bundle / "payments")
    shutil.copytree(ROOT / "functions", bundle / "functions")
    all_in_one = tree_size(bundle)
    largest = max(per_function.values())
    return {
        "layer_bytes": layer,
        "function_plus_layer_bytes": per_function,
        "all_in_one_bytes": all_in_one,
        "largest_ratio": largest / all_in_one,
    }


# --- targets and report -------------------------------------------------------------------

# The steps a buyer or member takes, and the floor each is compared with.
JOURNEY_STEPS = (
    ("checkout_returning_member", "checkout, returning member", "stripe_round_trip"),
    ("checkout_first_time_member", "checkout, first-time member", "stripe_round_trip"),
    ("product_switch", "product switch", "stripe_round_trip"),
    ("plan_change_preview", "plan-change preview", "stripe_round_trip"),
    ("plan_change", "plan change", "stripe_round_trip"),
    ("webhook_ack", "webhook acknowledgement", "sqs_send"),
    ("worker_batch", "worker batch (10 deliveries)", None),
)


@dataclass(frozen=True)
class Target:
    label: str
    value: float | None
    limit: float
    at_most: bool = True

    @property
    def met(self) -> bool:
        if self.value is None:
            return False
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def text(self) -> str:
        return f"{'≤' if self.at_most else '≥'} {self.limit:g}"


def add_ratios(report: dict[str, Any]) -> None:
    journey = report.get("journey")
    if not journey:
        return
    floors = journey["floors"]
    for key, _label, floor in JOURNEY_STEPS:
        if key in journey and floor is not None:
            base = floors[floor]["p50_ms"]
            journey[key]["floor"] = floor
            journey[key]["ratio_p50"] = journey[key]["p50_ms"] / base
            journey[key]["ratio_p99"] = journey[key]["p99_ms"] / base


def targets(report: dict[str, Any]) -> dict[str, Target]:
    """Each target of the run, by the figure it applies to."""
    found: dict[str, Target] = {}
    journey = report.get("journey", {})
    for key, limit, field_name in (
        ("checkout_returning_member", 1.3, "ratio_p50"),
        ("checkout_first_time_member", 1.5, "ratio_p50"),
        ("webhook_ack", 1.5, "ratio_p99"),
    ):
        if key in journey:
            found[f"journey.{key}"] = Target(key, journey[key][field_name], limit)
    for function, row in report.get("cold_start", {}).items():
        if not function.startswith("_"):
            limit = 0.15 if function == "webhook" else 0.3
            found[f"cold.{function}"] = Target(f"cold {function}", row["ratio"], limit)
    if "webhook_warm" in report and "20KB" in report["webhook_warm"]:
        p99 = report["webhook_warm"]["20KB"]["p99_ms"]["median"]
        found["webhook_warm.20KB"] = Target("webhook warm p99 20 KB (ms)", p99, 5.0)
    if "worker" in report:
        rate = report["worker"]["events_per_s"]["median"]
        found["worker"] = Target("worker events/s", rate, 1000, at_most=False)
    if "package" in report:
        found["package"] = Target("largest package ratio", report["package"]["largest_ratio"], 0.6)
    return found


def _ms(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} ms (±{s['iqr'] / 2:.1f})"


def _mark(target: Target | None) -> str:
    if target is None:
        return ""
    return f"{target.text():>8} {'ok' if target.met else 'MISSED'}"


def _calls(row: dict[str, Any]) -> str:
    parts = []
    for kind, counts in sorted(row["calls"].items()):
        waited, background = counts["median"], counts["background_median"]
        text = f"{kind} {waited:g}"
        if background:
            text += f" (+{background:g} after the answer)"
        if waited or background:
            parts.append(text)
    return ", ".join(parts) or "none"


def render(report: dict[str, Any]) -> str:
    found = targets(report)
    lines = [""]
    journey = report.get("journey")
    if journey:
        floors = journey["floors"]
        delays = ", ".join(f"{k} {v:g} ms" for k, v in journey["delays_ms"].items())
        lines += [
            f"journey with upstream delays ({delays})",
            f"  floors: one Stripe round trip {floors['stripe_round_trip']['p50_ms']:.0f} ms, "
            f"one SQS send {floors['sqs_send']['p50_ms']:.1f} ms (p50)",
            f"{'step':<32} {'p50':>9} {'p99':>9} {'ratio p50/p99':>15} {'target':>15}"
            "  calls waited for (median)",
            "-" * 120,
        ]
        for key, label, _floor in JOURNEY_STEPS:
            if key not in journey:
                continue
            row = journey[key]
            ratio = f"{row['ratio_p50']:.2f} / {row['ratio_p99']:.2f}" if "ratio_p50" in row else ""
            lines.append(
                f"{label:<32} {row['p50_ms']:>6.0f} ms {row['p99_ms']:>6.0f} ms {ratio:>15} "
                f"{_mark(found.get(f'journey.{key}')):>15}  {_calls(row)}"
            )
        lines.append("")
    cold = report.get("cold_start", {})
    if cold:
        empty = cold.get("_empty_interpreter_ms")
        lines.append(
            "cold import, whole process (spawn to handler imported): CPU time (target) and wall"
            " time; first answer adds the first request"
            + (f"; empty interpreter {empty['median']:.0f} ms wall" if empty else "")
        )
        lines.append(
            f"{'function':<16} {'CPU ours':>9} {'naive':>8} {'ratio':>6} {'target':>15}"
            f" {'wall ours':>18} {'naive':>18} {'ratio':>6}"
            f" {'1st answer CPU':>15}  largest imports (ms, own time)"
        )
        lines.append("-" * 120)
        for function, row in cold.items():
            if function.startswith("_"):
                continue
            largest = ", ".join(f"{i['package']} {i['ms']:.0f}" for i in row["largest_imports"][:4])
            cpu_ours, cpu_naive = row["cpu_ms"]["median"], row["cpu_naive_ms"]["median"]
            first, first_ratio = row["first_answer_cpu_ms"]["median"], row["first_answer_cpu_ratio"]
            lines.append(
                f"{function:<16} {cpu_ours:>6.0f} ms {cpu_naive:>5.0f} ms"
                f" {row['ratio']:>6.2f} {_mark(found.get(f'cold.{function}')):>15}"
                f" {_ms(row['ours_ms']):>18} {_ms(row['naive_ms']):>18} {row['wall_ratio']:>6.2f}"
                f" {first:>6.0f} ms ({first_ratio:.2f})  {largest}"
            )
        lines.append("")
    other = []
    for size, row in report.get("webhook_warm", {}).items():
        other.append(
            (
                f"webhook warm p50 / p99, {size} (loopback)",
                f"{row['p50_ms']['median']:.1f} / {row['p99_ms']['median']:.1f} ms",
                found.get(f"webhook_warm.{size}"),
            )
        )
    if "checkout_warm" in report:
        row = report["checkout_warm"]
        other.append(
            (
                "checkout warm p50 / p99 (loopback)",
                f"{row['p50_ms']['median']:.1f} / {row['p99_ms']['median']:.1f} ms",
                None,
            )
        )
    if "worker" in report:
        rate = report["worker"]["events_per_s"]
        other.append(
            (
                "worker throughput (10/batch, 20% dup)",
                f"{rate['median']:.0f} ev/s (±{rate['iqr'] / 2:.0f})",
                found.get("worker"),
            )
        )
    if "package" in report:
        pkg = report["package"]
        largest = max(pkg["function_plus_layer_bytes"].values())
        other.append(
            (
                "largest function + layer / all-in-one",
                f"{largest / 1e6:.1f} / {pkg['all_in_one_bytes'] / 1e6:.1f} MB "
                f"({pkg['largest_ratio']:.2f})",
                found.get("package"),
            )
        )
    for label, value, target in other:
        lines.append(f"{label:<44} {value:>28} {_mark(target):>15}")
    return "\n".join(lines)


def _delays(values: list[str]) -> dict[str, float]:
    from tools.bench.latency_model import DEFAULT_DELAYS_MS

    delays = dict(DEFAULT_DELAYS_MS)
    for item in values:
        kind, _, ms = item.partition("=")
        if kind not in delays:
            raise SystemExit(f"--delay {item}: the kinds are {', '.join(delays)}")
        delays[kind] = float(ms)
    return delays


SECTIONS = ["cold", "webhook", "checkout", "worker", "journey", "size"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--skip-size", action="store_true", help="skip sam build and bundling")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--only", nargs="*", metavar="SECTION", choices=SECTIONS, help="run only these sections"
    )
    parser.add_argument("--functions", nargs="*", help="cold starts of these functions only")
    parser.add_argument(
        "--delay",
        action="append",
        default=[],
        metavar="KIND=MS",
        help="per-call delay of the journey (stripe, memberstack, database, sqs, make)",
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    delays = _delays(args.delay)
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "repeats": repeats,
    }
    sections = set(args.only or SECTIONS)
    if args.skip_size:
        sections.discard("size")
    from tools.bench.latency_model import build_model, install_delayed_store, run_journey
    from tools.bench.sqs_stub import SqsStub

    with local_stack() as (env, handles):
        # Every stand-in gets its latency now, off until the journey: the database wrapper
        # must be in place before any handler in this process builds its store.
        model = build_model(delays)
        model.set(False)
        handles["emulator"].server.latency = model.latencies["stripe"]
        handles["memberstack"].latency = model.latencies["memberstack"]
        handles["make"].latency = model.latencies["make"]
        install_delayed_store(model.latencies["database"])
        if "cold" in sections:
            print("cold starts…", flush=True)
            report["cold_start"] = cold_starts(env, repeats, args.functions)
        if "webhook" in sections:
            print("webhook warm latency…", flush=True)
            report["webhook_warm"] = webhook_latency(env, 100 if args.quick else 500, repeats)
        if "checkout" in sections:
            print("checkout warm latency…", flush=True)
            report["checkout_warm"] = checkout_latency(env, 30 if args.quick else 100, repeats)
        if "worker" in sections:
            print("worker throughput…", flush=True)
            report["worker"] = worker_throughput(env, 50 if args.quick else 200, repeats)
        if "journey" in sections:
            print("journey with upstream delays…", flush=True)
            _apply_env(env)
            stub = SqsStub()
            stub.latency = model.latencies["sqs"]
            model.set(True)
            try:
                report["journey"] = {
                    "delays_ms": delays,
                    **run_journey(
                        env,
                        model,
                        handles["memberstack"].mint,
                        iterations=10 if args.quick else 30,
                        webhook_iterations=30 if args.quick else 100,
                        sqs_stub=stub,
                        worker_batches=5 if args.quick else 15,
                    ),
                }
            finally:
                model.set(False)
                stub.stop()
            add_ratios(report)
    if "size" in sections:
        print("package size (sam build)…", flush=True)
        report["package"] = package_sizes()
    found = targets(report)
    report["targets"] = {
        key: {"value": t.value, "limit": t.limit, "at_most": t.at_most, "met": t.met}
        for key, t in found.items()
    }
    print(render(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"\nwritten to {shown}")
    missed = [t.label for t in found.values() if not t.met]
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
