"""``python -m tools.doctor [--stack NAME] [--region R] [--api-url URL] [--member-token T]``

With ``--stack``, the configuration is the deployed functions' own; without it, the variables
the functions read, from this shell. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import httpx

from tools.doctor.checks import Check, Probes, run_checks
from tools.doctor.config import Config, from_environment, from_stack


def aws_clients(region: str | None) -> Callable[[str], Any]:
    import boto3

    session = boto3.session.Session(region_name=region)
    return lambda service: session.client(service)  # type: ignore[call-overload]


def format_check(check: Check) -> str:
    line = f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}"
    return line if check.ok or not check.fix else f"{line}\n    fix: {check.fix}"


def main(argv: list[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run every check; ``http`` replaces the HTTP client (tests route Supabase to a stand-in)."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.doctor",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stack", help="CloudFormation stack name (e.g. payments-prod)")
    parser.add_argument("--region", help="AWS region of the stack (default: your AWS config)")
    parser.add_argument("--api-url", help="the stack's ApiUrl, without --stack")
    parser.add_argument("--alarm-topic-arn", help="the stack's AlarmTopicArn, without --stack")
    parser.add_argument(
        "--member-token", help="a real member's Memberstack token: also checks the app id"
    )
    parser.add_argument("--expect-mode", choices=("test", "live"), help="fail on the other")
    args = parser.parse_args(argv)
    if args.region:
        # The secrets are read by the functions' own code, which takes the region from here.
        os.environ["AWS_DEFAULT_REGION"] = args.region
    clients = aws_clients(args.region)
    config: Config
    if args.stack:
        try:
            config = from_stack(args.stack, clients)
        except Exception as exc:  # noqa: BLE001 - botocore's errors; report, never a traceback
            print(f"✗ Stack {args.stack}: could not be read ({type(exc).__name__})")
            print("    fix: check the name, the region and your AWS credentials")
            return 1
    else:
        config = from_environment(os.environ)
    for name, value in (("API_URL", args.api_url), ("ALARM_TOPIC_ARN", args.alarm_topic_arn)):
        if value:
            config.values[name] = value
    print(f"Checking the configuration of {config.source}:")
    client = http or httpx.Client(timeout=10, follow_redirects=False)
    try:
        probes = Probes(
            config, client, clients, member_token=args.member_token, expect_mode=args.expect_mode
        )
        results = run_checks(probes)
    finally:
        if http is None:
            client.close()
    for check in results:
        print(format_check(check))
    failures = sum(not check.ok for check in results)
    print(f"\n{len(results) - failures} ✓ and {failures} ✗")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
