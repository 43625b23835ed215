"""Event creation and the events API."""

from __future__ import annotations

import fnmatch
from typing import Any

from tools.stripe_emulator import objects
from tools.stripe_emulator.state import Store, current_request, match_created, paginate


def emit(
    store: Store,
    type: str,
    obj: dict[str, Any],
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create event ``type`` with a snapshot of ``obj`` as it is now, and hand it to delivery.

    The snapshot is a deep copy, so later changes to ``obj`` do not leak into the event, as with
    Stripe where ``data.object`` is the object at the moment of the change.
    """
    with store.lock:
        event = objects.event(
            store,
            type=type,
            data_object=store.snapshot(obj),
            previous_attributes=store.snapshot(previous_attributes)
            if previous_attributes
            else None,
            request=current_request(),
            pending_webhooks=0,
        )
        store.add(event)
        for listener in store.event_listeners:
            listener(event)
        return event


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the old value of every top-level field that changed."""
    return {k: before.get(k) for k in after if k != "updated" and before.get(k) != after[k]}


def retrieve(store: Store, event_id: str) -> dict[str, Any]:
    """``GET /v1/events/{id}``."""
    return store.get(event_id, "event")


def list_events(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    """``GET /v1/events`` with ``type`` (``*`` wildcards), ``types``, ``created`` and
    ``delivery_success`` filters."""
    items = store.all("event")
    if "type" in params:
        items = [e for e in items if fnmatch.fnmatchcase(e["type"], params["type"])]
    if "types" in params:
        wanted = set(params["types"])
        items = [e for e in items if e["type"] in wanted]
    if "created" in params:
        items = [e for e in items if match_created(e, params["created"])]
    if "delivery_success" in params:
        delivered = params["delivery_success"]
        items = [e for e in items if (e["pending_webhooks"] == 0) == delivered]
    return paginate(items, params, "/v1/events")
