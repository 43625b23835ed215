"""Request validation against stripe-python's own typed parameter definitions.

stripe-python ships a ``TypedDict`` for the parameters of every endpoint
(``stripe.params.RefundCreateParams``, ``stripe.params.checkout.SessionCreateParams``, ...),
generated from the same OpenAPI spec as the API. Validating the decoded form against those
classes gives the emulator Stripe's parameter surface for the pinned API version without a
hand-written copy: unknown keys are rejected with ``parameter_unknown``, integers, booleans and
enums are type-checked, required keys enforced, and values are coerced (``"2"`` -> ``2``,
``"true"`` -> ``True``, ``{"0": x}`` -> ``[x]``).
"""

from __future__ import annotations

import functools
import re
import sys
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union, get_args, get_origin

from stripe._request_options import RequestOptions
from typing_extensions import is_typeddict

from tools.stripe_emulator.errors import (
    StripeError,
    invalid_empty,
    missing_parameter,
    unknown_parameter,
)
from tools.stripe_emulator.forms import index_dict_to_list, is_index_dict, normalize

# Per-request client options (api_key, idempotency_key, ...) are headers, never body params.
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_INT_RE = re.compile(r"^-?\d+$")


@functools.cache
def _schema(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """Resolve a params TypedDict into ``(field -> type, required field names)``."""
    namespace = dict(vars(sys.modules[cls.__module__]))
    # RequestOptions' own annotations name types that its module imports only for type checking.
    namespace.setdefault("StripeContext", object)
    namespace.setdefault("Mapping", Mapping)
    hints = typing.get_type_hints(cls, globalns=namespace)
    fields = {k: v for k, v in hints.items() if k not in _OPTION_KEYS}
    required = frozenset(k for k in getattr(cls, "__required_keys__", ()) if k in fields)
    return fields, required


def validate(params: Mapping[str, Any], schema: type) -> dict[str, Any]:
    """Check decoded parameters against ``schema`` and return them coerced to their types.

    Raises :class:`StripeError` (400) for the first problem found, naming the parameter the way
    Stripe does (``line_items[0][price]``).
    """
    return _check_typed_dict(dict(params), schema, "")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _check_typed_dict(value: Any, schema: type, path: str) -> dict[str, Any]:
    if is_index_dict(value) and path:
        raise StripeError(f"Invalid object: {path} must be a hash, not an array", param=path)
    if not isinstance(value, dict):
        raise StripeError(f"Invalid object: {path}", param=path or None)
    fields, required = _schema(schema)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in fields:
            raise unknown_parameter(_join(path, key))
        out[key] = _check(item, fields[key], _join(path, key))
    for key in sorted(required):
        if key not in value:
            raise missing_parameter(_join(path, key))
    return out


def _is_empty_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal and get_args(tp) == ("",)


def _kind(tp: Any) -> str:
    """Classify a type as 'scalar', 'list' or 'hash' to match it with the shape of a value."""
    origin = get_origin(tp)
    if origin in (list, typing.List):  # noqa: UP006 - typing.List is what stripe's hints use
        return "list"
    if origin in (dict, typing.Dict) or is_typeddict(tp):  # noqa: UP006
        return "hash"
    if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
        return "hash"
    return "scalar"


def _shape(value: Any) -> str:
    if isinstance(value, list) or is_index_dict(value):
        return "list"
    if isinstance(value, dict):
        return "hash"
    return "scalar"


def _check(value: Any, tp: Any, path: str) -> Any:
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return normalize(value)
    if origin in (Union, types.UnionType):
        return _check_union(value, get_args(tp), path)
    if value == "":
        if _is_empty_literal(tp):
            return ""
        raise invalid_empty(path)
    if origin is Literal:
        return _check_literal(value, get_args(tp), path)
    if tp is str:
        if not isinstance(value, str):
            raise StripeError(f"Invalid string: {path} must be a string", param=path)
        return value
    if tp is bool:
        if value not in ("true", "false"):
            raise StripeError(f"Invalid boolean: {_show(value)}", param=path)
        return value == "true"
    if tp is int:
        if not isinstance(value, str) or not _INT_RE.match(value):
            raise StripeError(
                f"Invalid integer: {_show(value)}", code="parameter_invalid_integer", param=path
            )
        return int(value)
    if tp is float:
        try:
            return float(Decimal(value))
        except (InvalidOperation, TypeError, ValueError):
            raise StripeError(f"Invalid decimal: {_show(value)}", param=path) from None
    kind = _kind(tp)
    if kind == "list":
        return _check_list(value, get_args(tp)[0] if get_args(tp) else Any, path)
    if is_typeddict(tp):
        return _check_typed_dict(value, tp, path)
    if kind == "hash":
        if not isinstance(value, dict):
            raise StripeError(f"Invalid object: {path}", param=path)
        args = get_args(tp)
        item_tp = args[1] if len(args) == 2 else Any
        return {str(k): _check(v, item_tp, _join(path, str(k))) for k, v in value.items()}
    return normalize(value)


def _check_list(value: Any, item_tp: Any, path: str) -> list[Any]:
    if is_index_dict(value):
        value = index_dict_to_list(value)
    if not isinstance(value, list):
        raise StripeError(f"Invalid array: {path} must be an array", param=path)
    return [_check(item, item_tp, f"{path}[{i}]") for i, item in enumerate(value)]


def _check_literal(value: Any, allowed: tuple[Any, ...], path: str) -> Any:
    if isinstance(value, str) and value in allowed:
        return value
    choices = [str(a) for a in allowed]
    listed = ", ".join(choices[:-1]) + (f", or {choices[-1]}" if len(choices) > 1 else choices[0])
    raise StripeError(f"Invalid {path}: must be one of {listed}", param=path)


def _check_union(value: Any, options: tuple[Any, ...], path: str) -> Any:
    if value == "" and any(_is_empty_literal(o) for o in options):
        return ""
    candidates = [o for o in options if not _is_empty_literal(o)]
    shape = _shape(value)
    matching = [o for o in candidates if _kind(o) == shape] or candidates
    first_error: StripeError | None = None
    for option in matching:
        try:
            return _check(value, option, path)
        except StripeError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(normalize(value))
