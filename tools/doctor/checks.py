"""The doctor's checks: each asks one outside service something real and says what to fix.

Nothing here changes what a customer sees: Stripe and SNS are only read; Supabase is asked
``schema_status()`` and, as a made-up member, a read that must come back empty; Memberstack is
shown a junk token; Make.com gets a ``doctor_probe`` dispatch, which the scenario's router
ignores (docs/deploy.md, "Make.com"). Vendor error messages are never printed: they can echo
part of a key.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import stripe

from payments.billing_portal import PortalConfiguration, choose_configuration
from payments.catalog import load_catalog
from payments.checkout import _drift
from payments.models import StripePrice
from payments.webhooks import handled_event_types
from tools.db import migration_files
from tools.doctor.config import Config

WEBHOOK_PATH = "/v1/webhooks/stripe"
DEFAULT_MEMBERSTACK_API = "https://admin.memberstack.com"
PROBE_KIND = "doctor_probe"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


@dataclass
class Probes:
    """What the checks talk through; tests point each at a local stand-in."""

    config: Config
    http: httpx.Client
    aws: Callable[[str], Any]
    member_token: str | None = None
    expect_mode: str | None = None


def _missing(name: str, *variables: str) -> Check:
    return failed(
        name,
        "not configured: " + ", ".join(variables),
        "set the stack parameter(s) behind " + ", ".join(variables) + " (docs/deploy.md)",
    )


# --- Stripe -------------------------------------------------------------------------------


def _stripe_client(config: Config) -> stripe.StripeClient:
    base = config.get("STRIPE_API_BASE")
    return stripe.StripeClient(
        config.get("STRIPE_SECRET_KEY") or "",
        base_addresses={"api": base} if base else {},
        max_network_retries=1,
    )


def key_mode(key: str) -> str:
    return "live" if key.startswith(("sk_live_", "rk_live_")) else "test"


def check_stripe(probes: Probes) -> Iterator[Check]:
    name = "Stripe secret key"
    key = probes.config.get("STRIPE_SECRET_KEY")
    if key is None:
        yield _missing(name, "STRIPE_SECRET_KEY")
        return
    if not key.startswith(("sk_test_", "sk_live_", "rk_test_", "rk_live_")):
        yield failed(
            name,
            "not a Stripe secret key (sk_test_… or sk_live_…)",
            "copy the secret key from Stripe: Developers → API keys",
        )
        return
    client = _stripe_client(probes.config)
    catalog = load_catalog()
    try:
        listed = client.v1.prices.list(
            params={"lookup_keys": [p.lookup_key for p in catalog.products], "limit": 100}
        )
    except stripe.AuthenticationError:
        yield failed(
            name,
            "Stripe refused the key",
            "copy the current secret key from Stripe: Developers → API keys, then redeploy "
            "with StripeSecretKey=…",
        )
        return
    except stripe.StripeError as exc:
        yield failed(
            name, f"Stripe did not answer ({type(exc).__name__})", "retry; see status.stripe.com"
        )
        return
    mode = key_mode(key)
    if probes.expect_mode and mode != probes.expect_mode:
        yield failed(
            name,
            f"accepted, but it is a {mode}-mode key and {probes.expect_mode} mode was expected",
            f"deploy the {probes.expect_mode}-mode key (docs/deploy.md, 'Going live')",
        )
    else:
        yield passed(name, f"accepted ({mode} mode)")
    prices = {p.lookup_key: p for p in listed.data if p.lookup_key}
    for product in catalog.products:
        found = prices.get(product.lookup_key)
        # Checkout's own rule: the doctor fails on exactly what makes checkout refuse to sell.
        problem = _drift(product, _price(found) if found is not None else None)
        check = f"Stripe price {product.lookup_key}"
        if problem is None:
            yield passed(check, f"active, {product.display_price} as in the catalog")
        else:
            yield failed(
                check,
                problem,
                "run .venv/bin/python -m tools.seed_stripe with this key (checkout refuses to sell "
                "this product until then)",
            )


def _price(price: stripe.Price) -> StripePrice:
    return StripePrice(
        id=price.id,
        lookup_key=price.lookup_key,
        unit_amount=price.unit_amount,
        currency=price.currency,
        interval=price.recurring.interval if price.recurring else None,
        active=price.active,
    )


def check_webhook_endpoint(probes: Probes) -> Iterator[Check]:
    name = "Stripe webhook endpoint"
    api_url = probes.config.get("API_URL")
    if probes.config.get("STRIPE_SECRET_KEY") is None:
        return
    if api_url is None:
        yield failed(
            name,
            "the API URL is unknown",
            "run with --stack <name>, or --api-url <ApiUrl output>",
        )
        return
    url = api_url.rstrip("/") + WEBHOOK_PATH
    seed = f".venv/bin/python -m tools.seed_stripe --webhook-url {url}"
    try:
        listed = _stripe_client(probes.config).v1.webhook_endpoints.list(params={"limit": 100})
        endpoints = [e for e in listed.auto_paging_iter() if e.url == url]
    except stripe.StripeError as exc:
        yield failed(name, f"could not be listed ({type(exc).__name__})", "check the key above")
        return
    if not endpoints:
        yield failed(name, f"none sends events to {url}", f"run {seed}")
        return
    wanted = set(handled_event_types())
    for endpoint in endpoints:
        enabled = set(endpoint.enabled_events)
        missing = sorted(wanted - enabled) if "*" not in enabled else []
        if endpoint.status != "enabled":
            yield failed(
                name,
                f"{endpoint.id} is {endpoint.status}",
                f"run {seed} (it enables it), then python -m tools.recover_events",
            )
        elif missing:
            yield failed(name, f"{endpoint.id} does not send {', '.join(missing)}", f"run {seed}")
        else:
            yield passed(name, f"{endpoint.id} enabled for {url} with every handled event")
    if len(endpoints) > 1:
        yield failed(
            name,
            f"{len(endpoints)} endpoints share {url}; each signs with its own secret",
            "delete all but the one whose secret the stack holds (Stripe: Developers → Webhooks)",
        )


def check_portal_configuration(probes: Probes) -> Iterator[Check]:
    """The configuration the subscriptions function opens the Billing Portal with: present,
    active, and allowing no plan change, cancellation or pause (the service prices those)."""
    name = "Stripe billing portal"
    if probes.config.get("STRIPE_SECRET_KEY") is None:
        return
    seed = "run .venv/bin/python -m tools.seed_stripe with this key (it creates or repairs it)"
    try:
        listed = _stripe_client(probes.config).v1.billing_portal.configurations.list(
            params={"limit": 100}
        )
        every = [
            PortalConfiguration.from_stripe(c.to_dict(recursive=True))
            for c in listed.auto_paging_iter()
        ]
    except stripe.StripeError as exc:
        yield failed(name, f"could not be listed ({type(exc).__name__})", "check the key above")
        return
    ours = [c for c in every if c.is_ours]
    chosen = choose_configuration(ours)
    if chosen is None:
        if not ours:
            detail = "no configuration of the service: members cannot open the portal (503)"
        elif not any(c.active for c in ours):
            detail = f"the service's configuration {ours[0].id} is inactive (the portal is closed)"
        else:
            first = next(c for c in ours if c.active)
            detail = (
                f"{first.id} allows {', '.join(sorted(first.forbidden_features))}: members could "
                "change what they pay outside the service's quotes, so the portal stays closed"
            )
        yield failed(name, detail, seed)
        return
    if chosen.missing_features:
        yield failed(
            name,
            f"{chosen.id} does not offer {', '.join(sorted(chosen.missing_features))}",
            seed,
        )
    else:
        yield passed(
            name,
            f"{chosen.id}: card updates and invoices only (subscription update, cancel and "
            "pause off)",
        )


# --- Supabase -----------------------------------------------------------------------------


def _rpc(
    probes: Probes, function: str, bearer: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    base = (probes.config.get("SUPABASE_URL") or "").rstrip("/")
    key = probes.config.get("SUPABASE_SERVICE_ROLE_KEY") or ""
    return probes.http.post(
        f"{base}/rest/v1/rpc/{function}",
        json=body or {},
        headers={"apikey": key, "Authorization": f"Bearer {bearer}"},
        timeout=10,
    )


def _function_missing(response: httpx.Response) -> bool:
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    return response.status_code == 404 or code in ("PGRST202", "42883")


def repository_versions() -> list[str]:
    return [path.name.split("_", 1)[0] for path in migration_files()]


def check_supabase(probes: Probes) -> Iterator[Check]:
    name = "Supabase"
    config = probes.config
    needed = [v for v in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY") if config.get(v) is None]
    if needed:
        yield _missing(name, *needed)
        return
    push = "apply the migrations: supabase db push (docs/deploy.md, 'Supabase')"
    try:
        response = _rpc(probes, "schema_status", config.get("SUPABASE_SERVICE_ROLE_KEY") or "")
    except httpx.HTTPError as exc:
        yield failed(
            name,
            f"{config.get('SUPABASE_URL')} unreachable ({type(exc).__name__})",
            "check SUPABASE_URL: Project Settings → Data API → Project URL",
        )
        return
    if response.status_code in (401, 403):
        yield failed(
            name,
            "the service key was refused",
            "copy the service_role key: Project Settings → API Keys, then redeploy with "
            "SupabaseServiceRoleKey=…",
        )
        return
    if _function_missing(response):
        yield passed(name, "reachable with the service key")
        yield failed("Supabase migrations", "schema_status() is missing", push)
        return
    if response.status_code != 200:
        status_page = "retry; see status.supabase.com"
        yield failed(name, f"answered HTTP {response.status_code}", status_page)
        return
    status = response.json()
    yield passed(name, "reachable with the service key")
    versions = repository_versions()
    missing = sorted(set(versions) - set(status.get("migrations") or []))
    if missing:
        yield failed("Supabase migrations", "not applied: " + ", ".join(missing), push)
    else:
        yield passed("Supabase migrations", f"applied up to {max(versions)}")
    open_tables = status.get("tables_without_rls") or []
    if open_tables:
        yield failed(
            "Supabase row-level security",
            "off on " + ", ".join(open_tables),
            "enable it (alter table … enable row level security) or drop tables the service "
            "does not own: the API exposes every table of the public schema",
        )
    else:
        yield passed("Supabase row-level security", "on for every table")


def member_probe_token(jwt_secret: str, member_id: str) -> str:
    now = int(time.time())
    claims = {
        "sub": member_id,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 60,
    }
    return jwt.encode(claims, jwt_secret, algorithm="HS256")


def check_member_jwt(probes: Probes) -> Iterator[Check]:
    name = "Supabase JWT secret"
    config = probes.config
    if config.get("SUPABASE_URL") is None or config.get("SUPABASE_SERVICE_ROLE_KEY") is None:
        return
    secret = config.get("SUPABASE_JWT_SECRET")
    if secret is None:
        yield _missing(name, "SUPABASE_JWT_SECRET")
        return
    # A member no one is: whatever it can read, it should not.
    token = member_probe_token(secret, f"mem_doctor_probe_{secrets.token_hex(6)}")
    try:
        export = _rpc(probes, "member_data_export", token)
        service_only = _rpc(probes, "schema_status", token)
    except httpx.HTTPError as exc:
        yield failed(name, f"Supabase unreachable ({type(exc).__name__})", "see above")
        return
    if export.status_code in (401, 403):
        yield failed(
            name,
            "a member token signed with it was refused",
            "copy the project's JWT secret: Project Settings → JWT Keys (legacy JWT secret), "
            "then redeploy with SupabaseJwtSecret=…",
        )
        return
    if export.status_code != 200:
        fix = "apply the migrations: supabase db push"
        yield failed(name, f"the member read answered HTTP {export.status_code}", fix)
        return
    data = export.json() or {}
    leaked = [key for key, value in data.items() if value not in (None, [], {})]
    if leaked:
        yield failed(
            name,
            "a made-up member can read rows of " + ", ".join(sorted(leaked)),
            "row-level security lets members see others' data: check the policies",
        )
    elif service_only.status_code == 200:
        yield failed(
            name,
            "a member token may call schema_status(), a service-only function",
            "revoke execute on the service functions from authenticated",
        )
    else:
        yield passed(name, "a signed member token works and reads nothing of anyone else")


# --- Memberstack --------------------------------------------------------------------------


def check_memberstack(probes: Probes) -> Iterator[Check]:
    name = "Memberstack secret key"
    config = probes.config
    key = config.get("MEMBERSTACK_SECRET_KEY")
    if key is None:
        yield _missing(name, "MEMBERSTACK_SECRET_KEY")
    else:
        yield _memberstack_key(probes, key)
    app_id = config.get("MEMBERSTACK_APP_ID")
    if app_id is None:
        yield _missing("Memberstack app id", "MEMBERSTACK_APP_ID")
    elif not app_id.startswith("app_"):
        yield failed(
            "Memberstack app id",
            "not an app id (app_…)",
            "copy it from Memberstack: Dev Tools → App ID",
        )
    elif probes.member_token and key:
        yield _memberstack_audience(probes, key, app_id)
    else:
        yield passed("Memberstack app id", f"{app_id} (--member-token also checks it)")


def _verify_url(config: Config) -> str:
    base = config.get("MEMBERSTACK_API_BASE") or DEFAULT_MEMBERSTACK_API
    return base.rstrip("/") + "/members/verify-token"


def _memberstack_key(probes: Probes, key: str) -> Check:
    name = "Memberstack secret key"
    junk = "doctor.probe." + secrets.token_urlsafe(12)
    try:
        response = probes.http.post(
            _verify_url(probes.config),
            json={"token": junk},
            headers={"X-API-KEY": key, "Accept": "application/json"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        return failed(name, f"Memberstack unreachable ({type(exc).__name__})", "retry")
    try:
        code = str(response.json().get("code") or "")
    except (ValueError, AttributeError):
        code = ""
    if response.status_code == 200:
        return failed(name, "a junk token was accepted", "check MEMBERSTACK_API_BASE")
    if response.status_code in (400, 401) and "TOKEN" in code.upper():
        return passed(name, "accepted (a junk token is refused as invalid)")
    if response.status_code in (401, 403):
        return failed(
            name,
            "Memberstack refused the key",
            "copy the secret key of the right mode: Memberstack → Dev Tools → API keys "
            "(sk_sb_… in test mode, sk_… live), then redeploy with MemberstackSecretKey=…",
        )
    return failed(name, f"Memberstack answered HTTP {response.status_code}", "retry")


def _memberstack_audience(probes: Probes, key: str, app_id: str) -> Check:
    name = "Memberstack app id"
    try:
        response = probes.http.post(
            _verify_url(probes.config),
            json={"token": probes.member_token},
            headers={"X-API-KEY": key, "Accept": "application/json"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        return failed(name, f"Memberstack unreachable ({type(exc).__name__})", "retry")
    if response.status_code != 200:
        return failed(
            name, "the --member-token given was refused", "sign in again and copy a fresh token"
        )
    audience = (response.json().get("data") or {}).get("aud")
    if audience != app_id:
        return failed(
            name,
            "the member token belongs to another app",
            "copy the App ID of the app the site signs in with: Memberstack → Dev Tools",
        )
    return passed(name, f"{app_id}, the audience of a real member token")


# --- Make.com, Sentry, alarms -------------------------------------------------------------


def check_make(probes: Probes) -> Iterator[Check]:
    name = "Make.com webhook"
    url, key = probes.config.get("MAKE_WEBHOOK_URL"), probes.config.get("MAKE_API_KEY")
    missing = [n for n, v in (("MAKE_WEBHOOK_URL", url), ("MAKE_API_KEY", key)) if v is None]
    if missing or url is None or key is None:
        yield _missing(name, *missing)
        return
    probe = {
        "kind": PROBE_KIND,
        "idempotency_key": f"doctor-probe-{secrets.token_hex(6)}",
        "sent_at": datetime.now(UTC).isoformat(),
    }
    try:
        response = probes.http.post(url, json=probe, headers={"x-make-apikey": key}, timeout=10)
    except httpx.HTTPError as exc:
        yield failed(
            name,
            f"unreachable ({type(exc).__name__})",
            "copy the webhook address from the scenario's first module",
        )
        return
    if 200 <= response.status_code < 300:
        yield passed(name, f"answering (HTTP {response.status_code}) and the API key accepted")
    elif response.status_code in (401, 403):
        yield failed(
            name,
            "the API key was refused",
            "use the key set on the webhook (Make.com: Webhooks → the hook → API keys), "
            "then redeploy with MakeApiKey=…",
        )
    elif response.status_code in (404, 410):
        yield failed(
            name,
            f"no scenario listens there (HTTP {response.status_code})",
            "copy the address of the scenario's webhook again, then redeploy with MakeWebhookUrl=…",
        )
    else:
        yield failed(name, f"answered HTTP {response.status_code}", "check the scenario's history")


def check_sentry(probes: Probes) -> Iterator[Check]:
    name = "Sentry DSN"
    dsn = probes.config.get("SENTRY_DSN")
    if dsn is None:
        yield passed(name, "not set: errors and alerts go to the CloudWatch logs only")
        return
    parts = urlsplit(dsn)
    project = parts.path.strip("/").split("/")[-1]
    well_formed = parts.scheme in ("https", "http") and parts.username and parts.hostname
    if well_formed and project.isdigit():
        yield passed(name, f"well-formed (project {project} at {parts.hostname})")
    else:
        yield failed(
            name,
            "not a DSN (https://<key>@<host>/<project id>)",
            "copy it from Sentry: Project Settings → Client Keys (DSN), then redeploy with "
            "SentryDsn=…",
        )


def check_alarm_topic(probes: Probes) -> Iterator[Check]:
    name = "Alarm notifications"
    topic = probes.config.get("ALARM_TOPIC_ARN")
    if topic is None:
        yield failed(
            name, "the alarm topic is unknown", "run with --stack <name> or --alarm-topic-arn"
        )
        return
    try:
        sns = probes.aws("sns")
        pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
        subscriptions = [s for page in pages for s in page["Subscriptions"]]
    except Exception as exc:  # noqa: BLE001 - botocore's errors; any of them means unreadable
        yield failed(
            name,
            f"the topic could not be read ({type(exc).__name__})",
            "use credentials allowed sns:ListSubscriptionsByTopic",
        )
        return
    confirmed = [s for s in subscriptions if s["SubscriptionArn"].startswith("arn:")]
    if confirmed:
        who = ", ".join(sorted({f"{s['Protocol']}:{s['Endpoint']}" for s in confirmed}))
        yield passed(name, f"{len(confirmed)} confirmed subscription(s): {who}")
    elif subscriptions:
        yield failed(
            name,
            "the subscription is not confirmed yet",
            "open the 'AWS Notification - Subscription Confirmation' e-mail and confirm",
        )
    else:
        yield failed(
            name,
            "nobody receives alarms",
            "redeploy with AlarmEmail=<address>, then confirm the e-mail AWS sends",
        )


ALL_CHECKS = (
    check_stripe,
    check_webhook_endpoint,
    check_portal_configuration,
    check_supabase,
    check_member_jwt,
    check_memberstack,
    check_make,
    check_sentry,
    check_alarm_topic,
)


def run_checks(probes: Probes) -> list[Check]:
    results = [
        failed("Configuration", problem, "check the secret and the deployer's permissions")
        for problem in probes.config.problems
    ]
    for check in ALL_CHECKS:
        results.extend(check(probes))
    return results
