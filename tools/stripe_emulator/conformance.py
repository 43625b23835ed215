"""Checks objects and events against the pinned API version's own definitions.

The definitions are ``schemas/stripe-api.schema.json``: JSON Schemas generated (``make
stripe-schemas``) from the TypeScript types of the ``stripe`` npm package Stripe publishes for
the pinned version, so they say which fields an object has, which are required, which may be
null and which values an enum takes. :class:`Conformance` validates one API response or one
event against them and answers with readable violations (``charge.refunds: only included with
expand[]=refunds``); ``tests/emulator/test_conformance.py`` drives the emulator through every
flow it serves and requires none.

Beyond the schema itself:

- an event's ``type`` must be one stripe-python knows (its ``Event.type`` literal), and the
  event is checked against that type's own definition (``charge.refunded`` carries a charge);
- a field Stripe includes only on request (``charge.refunds``, ``checkout.session.line_items``,
  ``invoice.payments``: ``x-includable`` in the schema) is a violation unless the request
  expanded it, and it is never in an event;
- in an event's ``previous_attributes`` (``Partial<T>`` in the types), a field the object did
  not have before is reported as ``null``, as Stripe does (a refund's ``failure_reason`` before
  it failed): that ``null`` is accepted for a field ``T`` declares optional, and only there.
"""

from __future__ import annotations

import contextvars
import functools
import json
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import stripe
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource

SCHEMA_PATH = Path(__file__).parent / "schemas" / "stripe-api.schema.json"
_BASE = "urn:stripe-api"

# The fields the request being checked asked to expand (their last path segments).
_expanded: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "stripe_emulator_expanded", default=frozenset()
)


def _includable(
    validator: Any, fields: list[str], instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    allowed = _expanded.get()
    for name in fields:
        if name in instance and name not in allowed:
            yield ValidationError(f"only included with expand[]={name}", path=[name])


_Validator = validators.extend(Draft202012Validator, {"x-includable": _includable})


@functools.cache
def schema_document() -> dict[str, Any]:
    """The generated schema document (``x-api-version``, ``x-objects``, ``x-events``,
    ``$defs``)."""
    document: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return document


@functools.cache
def stripe_python_event_types() -> frozenset[str]:
    """Every event type stripe-python's ``Event.type`` names."""
    annotation = typing.get_type_hints(stripe.Event)["type"]
    return frozenset(typing.get_args(annotation))


def expanded_fields(expand: Iterable[str]) -> frozenset[str]:
    """The field names an ``expand[]`` list asks for (``data.refunds`` → ``refunds``)."""
    return frozenset(path.split(".")[-1] for path in expand)


class Conformance:
    """Validates objects and events against the schema document."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document or schema_document()
        self.api_version: str = self.document["x-api-version"]
        self.objects: dict[str, str] = self.document["x-objects"]
        self.deleted_objects: dict[str, str] = self.document["x-deleted-objects"]
        self.events: dict[str, str] = self.document["x-events"]
        resource = Resource.from_contents(self.document)
        self._registry: Registry[Any] = Registry().with_resource(_BASE, resource)
        self._validators: dict[str, Any] = {}

    def _validator(self, definition: str) -> Any:
        if definition not in self._validators:
            self._validators[definition] = _Validator(
                {"$ref": f"{_BASE}#/$defs/{definition}"}, registry=self._registry
            )
        return self._validators[definition]

    def definition_of(self, obj: dict[str, Any]) -> str | None:
        """The definition an object is checked against, from its ``object`` (and ``type`` for
        events, ``deleted`` for deletion answers)."""
        kind = obj.get("object")
        if not isinstance(kind, str):
            return None
        if kind == "event":
            return self.events.get(str(obj.get("type")))
        if kind == "list":
            return "ApiList"
        if kind == "search_result":
            return "ApiSearchResult"
        if obj.get("deleted") is True:
            return self.deleted_objects.get(kind)
        return self.objects.get(kind)

    def check_object(self, obj: Any, *, expand: Iterable[str] = ()) -> list[str]:
        """Violations of one API answer (an object, a list or a search result); the items
        of a list are checked against their own definitions."""
        if not isinstance(obj, dict):
            return [f"not an object: {obj!r:.80}"]
        if obj.get("object") == "event":
            return self.check_event(obj)
        definition = self.definition_of(obj)
        if definition is None:
            return [f"no definition for object {obj.get('object')!r}"]
        token = _expanded.set(expanded_fields(expand))
        try:
            found = _describe(self._validator(definition).iter_errors(obj))
        finally:
            _expanded.reset(token)
        if definition in ("ApiList", "ApiSearchResult"):
            item_expand = [p.removeprefix("data.") for p in expand if p.startswith("data.")]
            for index, item in enumerate(obj.get("data") or []):
                found += [
                    f"data.{index}.{v}" if not v.startswith("data.") else v
                    for v in self.check_object(item, expand=item_expand)
                ]
        return found

    def check_event(self, event: Any) -> list[str]:
        """Violations of one event: a type stripe-python knows, and its definition."""
        if not isinstance(event, dict):
            return [f"not an event: {event!r:.80}"]
        event_type = event.get("type")
        problems = []
        if event_type not in stripe_python_event_types():
            problems.append(f"type {event_type!r} is not an event type of stripe-python")
        definition = self.events.get(str(event_type))
        if definition is None:
            return [*problems, f"no definition for event type {event_type!r}"]
        token = _expanded.set(frozenset())
        try:
            checked = self._without_absent_before(event)
            problems += _describe(self._validator(definition).iter_errors(checked))
        finally:
            _expanded.reset(token)
        return problems

    def _without_absent_before(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` without the ``previous_attributes`` entries that say "absent before":
        ``null`` for a field the object's type declares optional."""
        data = event.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("previous_attributes"), dict):
            return event
        obj = data.get("object")
        definition = self.definition_of(obj) if isinstance(obj, dict) else None
        if definition is None:
            return event
        required = set(self.document["$defs"][definition].get("required", []))
        previous = {
            key: value
            for key, value in data["previous_attributes"].items()
            if value is not None or key in required
        }
        return {**event, "data": {**data, "previous_attributes": previous}}


# Error reporting --------------------------------------------------------------------------


def _path(error: ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(object)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _type_mismatch(errors: list[ValidationError], depth: int) -> bool:
    """True when a branch of ``anyOf`` failed on the value's own type, not inside it."""
    return any(
        e.validator in ("type", "const", "enum") and len(e.absolute_path) == depth for e in errors
    )


def _describe(errors: Iterable[ValidationError]) -> list[str]:
    """Readable violations; for ``anyOf`` (nullable, or an id-or-object), the errors of the
    branch that matches the value's type, rather than jsonschema's "not valid under any"."""
    found: list[str] = []
    for error in errors:
        if error.validator == "anyOf" and error.context:
            depth = len(error.absolute_path)
            branches: dict[Any, list[ValidationError]] = {}
            for sub in error.context:
                branches.setdefault(sub.relative_schema_path[0], []).append(sub)
            matching = [b for b in branches.values() if not _type_mismatch(b, depth)]
            if matching:
                closest = matching[0]
                for branch in matching[1:]:
                    closest = branch if len(branch) < len(closest) else closest
                found += _describe(closest)
                continue
            allowed = sorted(
                {
                    str(s.get("type") or ("object" if "$ref" in s else "value"))
                    for s in error.validator_value
                }
            )
            found.append(
                f"{_path(error)}: {_json_type(error.instance)} where the type allows "
                f"{' or '.join(allowed)}"
            )
            continue
        if error.validator == "additionalProperties":
            declared = error.schema.get("properties", {})
            extra = sorted(k for k in error.instance if k not in declared)
            for name in extra:
                where = f"{_path(error)}.{name}" if error.absolute_path else name
                found.append(f"{where}: not a field of this type")
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1]
            where = f"{_path(error)}.{missing}" if error.absolute_path else missing
            found.append(f"{where}: required field missing")
            continue
        if error.validator == "enum":
            found.append(
                f"{_path(error)}: {error.instance!r} is not one of {sorted(error.validator_value)}"
            )
            continue
        found.append(f"{_path(error)}: {error.message}")
    return found
