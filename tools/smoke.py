"""``python -m tools.smoke --api-url <ApiUrl>``: a non-destructive check of a deployed API.

    python -m tools.smoke --api-url https://abc.execute-api.us-east-1.amazonaws.com \\
        --origin https://www.example.com [--member-token <Memberstack token of a test member>]

1. ``GET /v1/health`` answers ``{"status": "ok"}``.
2. ``GET /v1/pricing`` is the catalog of this repository, price for price.
3. A browser preflight from ``--origin`` (default: the first of ``ALLOWED_ORIGINS``) is allowed,
   one from an origin that is not the site's is not.
4. ``POST /v1/webhooks/stripe`` refuses an unsigned and a wrongly signed call with 400.
5. With ``--member-token`` (test mode only): ``POST /v1/checkout/sessions`` answers a test-mode
   Checkout Session. Nobody pays it: it expires by itself, nothing is charged.

Prints ✓ or ✗ per check; exit status 1 when any fails. Nothing here reads a secret.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from payments.catalog import load_catalog

FOREIGN_ORIGIN = "https://smoke-test.invalid"


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def check_health(http: httpx.Client, api: str) -> Iterator[Result]:
    response = http.get(f"{api}/v1/health")
    body = _json(response)
    if response.status_code == 200 and body == {"status": "ok"}:
        yield Result("health", True, 'answers {"status": "ok"}')
    else:
        yield Result("health", False, f"HTTP {response.status_code}")


def check_pricing(http: httpx.Client, api: str) -> Iterator[Result]:
    response = http.get(f"{api}/v1/pricing")
    body = _json(response)
    expected = load_catalog().public_view()
    if response.status_code != 200 or not isinstance(body, dict):
        yield Result("pricing", False, f"HTTP {response.status_code}")
        return
    served = {str(p.get("id")): p for p in body.get("products", []) if isinstance(p, dict)}
    wanted: dict[str, object] = {str(p["id"]): p for p in expected["products"]}
    different = sorted(
        pid for pid in wanted.keys() | served.keys() if wanted.get(pid) != served.get(pid)
    )
    if different:
        yield Result(
            "pricing",
            False,
            "differs from this repository's catalog for "
            + ", ".join(map(str, different))
            + " (deploy this version, or check out the deployed one)",
        )
    else:
        yield Result("pricing", True, f"{len(wanted)} products, as in catalog.json")


def _preflight(http: httpx.Client, api: str, origin: str) -> httpx.Response:
    return http.options(
        f"{api}/v1/checkout/sessions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )


def check_cors(http: httpx.Client, api: str, origin: str | None) -> Iterator[Result]:
    if not origin:
        yield Result("CORS", False, "no origin to check: pass --origin https://<your site>")
        return
    allowed = _preflight(http, api, origin)
    if allowed.headers.get("access-control-allow-origin") not in (origin, "*"):
        yield Result(
            "CORS",
            False,
            f"a preflight from {origin} is not allowed: add it to the AllowedOrigins parameter",
        )
    else:
        yield Result("CORS", True, f"the browser may call the API from {origin}")
    foreign = _preflight(http, api, FOREIGN_ORIGIN)
    if foreign.headers.get("access-control-allow-origin"):
        yield Result("CORS", False, "another site's origin is allowed too: list only yours")


def check_webhook_refuses_unsigned(http: httpx.Client, api: str) -> Iterator[Result]:
    url = f"{api}/v1/webhooks/stripe"
    body = '{"id": "evt_smoke", "object": "event"}'
    headers = {"Content-Type": "application/json"}
    unsigned = http.post(url, content=body, headers=headers)
    forged = http.post(
        url,
        content=body,
        headers={**headers, "Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"},
    )
    statuses = (unsigned.status_code, forged.status_code)
    if statuses == (400, 400):
        yield Result("webhook", True, "unsigned and wrongly signed calls refused with 400")
    else:
        yield Result(
            "webhook",
            False,
            f"unsigned → HTTP {statuses[0]}, wrong signature → HTTP {statuses[1]} (400 expected)",
        )


def check_checkout(
    http: httpx.Client, api: str, token: str | None, product: str
) -> Iterator[Result]:
    if token is None:
        return
    response = http.post(
        f"{api}/v1/checkout/sessions",
        json={"product": product},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"smoke-{uuid.uuid4()}"},
    )
    body = _json(response)
    session = body if isinstance(body, dict) else {}
    session_id, url = str(session.get("id", "")), str(session.get("url", ""))
    if response.status_code == 201 and session_id.startswith("cs_test_") and "://" in url:
        yield Result("checkout", True, f"test-mode session {session_id[:16]}… created")
    elif response.status_code == 201:
        yield Result(
            "checkout",
            False,
            f"{session_id[:16]}… is not a test-mode session: the stack is live (the session "
            "expires unpaid; nothing is charged). Run this step in test mode only",
        )
    else:
        error = session.get("error") if isinstance(session.get("error"), dict) else {}
        code = error.get("code") if isinstance(error, dict) else None
        yield Result("checkout", False, f"HTTP {response.status_code} {code or ''}".strip())


def run_smoke(
    http: httpx.Client,
    api_url: str,
    *,
    origin: str | None,
    member_token: str | None = None,
    product: str = "business_plan_builder",
) -> list[Result]:
    api = api_url.rstrip("/")
    steps: list[Callable[[], Iterator[Result]]] = [
        lambda: check_health(http, api),
        lambda: check_pricing(http, api),
        lambda: check_cors(http, api, origin),
        lambda: check_webhook_refuses_unsigned(http, api),
        lambda: check_checkout(http, api, member_token, product),
    ]
    results: list[Result] = []
    for step in steps:
        try:
            results.extend(step())
        except httpx.HTTPError as exc:
            results.append(Result("request", False, f"{api} unreachable ({type(exc).__name__})"))
            break
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--api-url", required=True, help="the stack's ApiUrl output")
    parser.add_argument("--origin", help="your site's origin (default: first of ALLOWED_ORIGINS)")
    parser.add_argument("--member-token", help="a test member's Memberstack token (test mode)")
    parser.add_argument(
        "--product",
        default="business_plan_builder",
        help="the one-time product whose checkout the member token opens (not paid)",
    )
    args = parser.parse_args(argv)
    origins = [o.strip() for o in os.environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip()]
    with httpx.Client(timeout=15) as http:
        results = run_smoke(
            http,
            args.api_url,
            origin=args.origin or (origins[0] if origins else None),
            member_token=args.member_token,
            product=args.product,
        )
    for result in results:
        print(f"{'✓' if result.ok else '✗'} {result.name}: {result.detail}")
    failures = sum(not r.ok for r in results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
