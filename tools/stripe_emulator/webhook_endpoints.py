"""Webhook endpoints (``/v1/webhook_endpoints``): create, retrieve, update, list, delete.

Objects start from Stripe's fixture (``webhook_endpoint``, ``deleted_webhook_endpoint``). As with
Stripe, the signing ``secret`` is part of the answer to the create call only; later reads never
show it. These are stored objects for the tools that set up and check an account
(``tools.seed_stripe``, ``tools.doctor``): the emulator's own delivery still goes to the one
endpoint configured with ``--webhook-url`` (``/_emulator/webhook-endpoint``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tools.stripe_emulator import objects
from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.state import Store, deep_merge_metadata, new_id, paginate
from tools.stripe_emulator.webhooks import new_webhook_secret

KIND = "webhook_endpoint"


def _check_url(url: Any) -> str:
    parts = urlsplit(str(url or ""))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise StripeError("Invalid URL: must be a valid http or https URL.", param="url")
    return str(url)


def _check_events(events: Any) -> list[str]:
    if not events:
        raise StripeError(
            "Missing required param: enabled_events.",
            code="parameter_missing",
            param="enabled_events",
        )
    return [str(event) for event in events]


def create_endpoint(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/webhook_endpoints``; the answer carries the signing secret, once."""
    endpoint = objects.fixture(KIND)
    secret = new_webhook_secret()
    endpoint.update(
        id=new_id("we_"),
        livemode=False,
        created=store.now(),
        url=_check_url(params.get("url")),
        enabled_events=_check_events(params.get("enabled_events")),
        description=params.get("description"),
        metadata=dict(params.get("metadata") or {}),
        api_version=params.get("api_version"),
        application=None,
        status="enabled",
    )
    store.add(endpoint)
    store.hidden(endpoint["id"])["secret"] = secret
    return {**store.snapshot(endpoint), "secret": secret}


def update_endpoint(store: Store, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """``POST /v1/webhook_endpoints/{id}``: ``url``, ``enabled_events``, ``disabled``, …"""
    endpoint = store.get(endpoint_id, KIND)
    if "url" in params:
        endpoint["url"] = _check_url(params["url"])
    if "enabled_events" in params:
        endpoint["enabled_events"] = _check_events(params["enabled_events"])
    if "description" in params:
        endpoint["description"] = params["description"] or None
    if "disabled" in params:
        endpoint["status"] = "disabled" if params["disabled"] else "enabled"
    if "metadata" in params:
        endpoint["metadata"] = deep_merge_metadata(endpoint["metadata"], params["metadata"])
    return endpoint


def list_endpoints(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/webhook_endpoints``, newest first."""
    return paginate(store.all(KIND), params, "/v1/webhook_endpoints")


def delete_endpoint(store: Store, endpoint_id: str) -> dict[str, Any]:
    """``DELETE /v1/webhook_endpoints/{id}``."""
    store.get(endpoint_id, KIND)
    del store.objects[endpoint_id]
    store.internal.pop(endpoint_id, None)
    deleted = objects.fixture("deleted_webhook_endpoint")
    deleted["id"] = endpoint_id
    return deleted
