"""Response rendering with Stripe's ``expand[]`` semantics."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.state import Store

# Fields that are not ids but are computed on demand when expanded.
Computed = Callable[[Store, dict[str, Any]], Any]
_COMPUTED: dict[tuple[str, str], Computed] = {}

MAX_DEPTH = 4


def register_computed(object_type: str, field: str, fn: Computed) -> None:
    """Let ``expand[]=field`` on ``object_type`` produce ``fn(store, obj)``."""
    _COMPUTED[(object_type, field)] = fn


def render(store: Store, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
    """A deep copy of ``obj`` ready to send, with the requested fields expanded."""
    result = copy.deepcopy(obj)
    for path in expand or []:
        parts = path.split(".")
        if len(parts) > MAX_DEPTH:
            raise StripeError(
                f"You cannot expand more than {MAX_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        _expand(store, result, parts, path)
    return result


def _expand(store: Store, obj: dict[str, Any], parts: list[str], full: str) -> None:
    field, rest = parts[0], parts[1:]
    if obj.get("object") in ("list", "search_result") and field == "data":
        for item in obj.get("data", []):
            if rest:
                _expand(store, item, rest, full)
        return
    computed = _COMPUTED.get((str(obj.get("object")), field))
    if computed is not None:
        obj[field] = computed(store, obj)
    elif field not in obj:
        raise StripeError(f"This property cannot be expanded ({full}).", param="expand")
    else:
        value = obj[field]
        if isinstance(value, str):
            # By the stored object, not the id's prefix: products may have ids of their own.
            target = store.objects.get(value)
            if target is None:
                raise StripeError(f"This property cannot be expanded ({full}).", param="expand")
            obj[field] = copy.deepcopy(target)
        elif value is not None and not isinstance(value, dict):
            raise StripeError(f"This property cannot be expanded ({full}).", param="expand")
    if rest and isinstance(obj.get(field), dict):
        _expand(store, obj[field], rest, full)
