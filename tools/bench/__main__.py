"""``make bench``: cold starts, webhook and checkout latency, worker throughput, package size.

Every figure is measured in this one run beside a naive baseline (``naive_handler``: every SDK
imported eagerly at module level) and reported as a median with its spread over repeats, and
as a ratio to the baseline where there is one. Network calls are answered on loopback: the
Stripe emulator, the Memberstack stand-in, the Make.com receiver, moto's SQS and an embedded
Postgres. Writes the table to stdout and ``benchmarks/latest.json``.

    python -m tools.bench [--quick] [--skip-size] [--output PATH]
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
def local_stack() -> Iterator[dict[str, str]]:
    """Start everything the functions call, on loopback; yield their environment."""
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
        yield env


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


def cold_starts(env: dict[str, str], repeats: int, only: list[str] | None = None) -> dict[str, Any]:
    child_env = {
        **os.environ,
        **{k: v for k, v in env.items() if not k.startswith("_")},
        "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    results: dict[str, Any] = {}
    python = runtime_python()
    with tempfile.TemporaryDirectory() as tmp:
        for function in functions():
            if only and function not in only:
                continue
            path = Path(tmp) / f"{function}.json"
            samples: dict[str, list[float]] = {"ours": [], "naive": []}
            for _ in range(repeats):
                # Alternate the variants so drift on the machine hits both alike.
                for variant, module in (
                    ("ours", f"functions.{function}.app"),
                    ("naive", "tools.bench.naive_handler"),
                ):
                    path.write_text(json.dumps(sample_event(function, env)))
                    out = subprocess.run(
                        [python, "-m", "tools.bench.cold_start", str(path), module],
                        env={**child_env, "BENCH_FUNCTION": function},
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    measured = json.loads(out.stdout.strip().splitlines()[-1])
                    samples[variant].append(measured["total_s"] * 1000)
            ours, naive = summary(samples["ours"]), summary(samples["naive"])
            results[function] = {
                "ours_ms": ours,
                "naive_ms": naive,
                "ratio": ours["median"] / naive["median"],
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
    for n in range(purchases):
        member = f"mem_bench_{n:05d}"
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


# --- report -------------------------------------------------------------------------------


def _ms(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} ms (±{s['iqr'] / 2:.1f})"


def render(report: dict[str, Any]) -> str:
    lines = ["", f"{'figure':<44} {'ours':>20} {'naive':>20} {'ratio':>7}", "-" * 94]
    for function, row in report.get("cold_start", {}).items():
        lines.append(
            f"{'cold start ' + function:<44} {_ms(row['ours_ms']):>20} "
            f"{_ms(row['naive_ms']):>20} {row['ratio']:>7.2f}"
        )
    for size, row in report.get("webhook_warm", {}).items():
        lines.append(f"{'webhook warm p50 ' + size:<44} {_ms(row['p50_ms']):>20}")
        lines.append(f"{'webhook warm p99 ' + size:<44} {_ms(row['p99_ms']):>20}")
    if "checkout_warm" in report:
        row = report["checkout_warm"]
        lines.append(f"{'checkout warm p50 (emulator)':<44} {_ms(row['p50_ms']):>20}")
        lines.append(f"{'checkout warm p99 (emulator)':<44} {_ms(row['p99_ms']):>20}")
    if "worker" in report:
        rate = report["worker"]["events_per_s"]
        lines.append(
            f"{'worker throughput (10/batch, 20% dup)':<44} "
            f"{rate['median']:>11.0f} ev/s (±{rate['iqr'] / 2:.0f})"
        )
    if "package" in report:
        pkg = report["package"]
        largest = max(pkg["function_plus_layer_bytes"].values())
        lines.append(
            f"{'largest function + layer (unzipped)':<44} {largest / 1e6:>17.1f} MB "
            f"{pkg['all_in_one_bytes'] / 1e6:>17.1f} MB {pkg['largest_ratio']:>7.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--skip-size", action="store_true", help="skip sam build and bundling")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument(
        "--only",
        nargs="*",
        metavar="SECTION",
        choices=["cold", "webhook", "checkout", "worker", "size"],
        help="run only these sections",
    )
    parser.add_argument("--functions", nargs="*", help="cold starts of these functions only")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "repeats": repeats,
    }
    sections = set(args.only or ["cold", "webhook", "checkout", "worker", "size"])
    if args.skip_size:
        sections.discard("size")
    with local_stack() as env:
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
    if "size" in sections:
        print("package size (sam build)…", flush=True)
        report["package"] = package_sizes()
    print(render(report))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"\nwritten to {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
