"""Decoding of Stripe's form-encoded parameters.

Stripe clients send nested parameters as bracketed keys::

    items[0][price]=price_1&items[0][quantity]=2&metadata[order]=42&expand[]=data.product

:func:`decode` turns such a body (or query string) into nested dicts and lists. Bracketed
segments that are numbers are kept as dict keys here (``{"0": {...}}``) because the decoder
cannot tell ``items[0]`` (a list index) from ``metadata[0]`` (a metadata key named "0");
:mod:`validation` converts them into lists where the endpoint's schema expects a list, and
:func:`normalize` does the same for endpoints without a schema.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from tools.stripe_emulator.errors import StripeError

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


class FormDecodeError(StripeError):
    """A key whose brackets cannot be decoded, or that is used both as a value and a hash."""


def _segments(key: str) -> list[str]:
    match = _KEY_RE.match(key)
    if match is None:
        raise FormDecodeError(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_SEGMENT_RE.findall(match.group(2))]


def decode(raw: str | bytes) -> dict[str, Any]:
    """Decode an ``application/x-www-form-urlencoded`` string into nested dicts and lists.

    ``a[]`` appends to a list (a following ``a[][b]`` starts a new element once ``b`` is already
    set on the last one, like Rails and Stripe); every other bracket is a dict key. Values stay
    strings; blank values are kept because ``metadata=`` means "unset" to Stripe.
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=False):
        segments = _segments(key)
        _assign(root, segments, value, key)
    return root


def _assign(container: dict[str, Any], segments: list[str], value: str, key: str) -> None:
    head, rest = segments[0], segments[1:]
    if not rest:
        if isinstance(container.get(head), (dict, list)):
            raise FormDecodeError(f"Invalid value for {key}: it is also sent as a hash", param=key)
        container[head] = value
        return
    if rest[0] == "":
        target = container.setdefault(head, [])
        if not isinstance(target, list):
            raise FormDecodeError(f"Invalid array: {key}", param=key)
        _append(target, rest[1:], value, key)
        return
    target = container.setdefault(head, {})
    if not isinstance(target, dict):
        raise FormDecodeError(f"Invalid hash: {key}", param=key)
    _assign(target, rest, value, key)


def _append(items: list[Any], rest: list[str], value: str, key: str) -> None:
    if not rest:
        items.append(value)
        return
    if rest[0] == "":
        raise FormDecodeError(f"Nested arrays are not supported: {key}", param=key)
    last = items[-1] if items else None
    # Start a new element when the last one already has this field (Rails' rule for a[][b]).
    if not isinstance(last, dict) or (rest[0] in last and len(rest) == 1):
        last = {}
        items.append(last)
    _assign(last, rest, value, key)


def is_index_dict(value: Any) -> bool:
    """True for a dict decoded from ``x[0]..x[n]`` keys, i.e. one that stands for a list."""
    return isinstance(value, dict) and bool(value) and all(str(k).isdigit() for k in value)


def index_dict_to_list(value: dict[str, Any]) -> list[Any]:
    """Order the values of an index dict by their numeric keys."""
    return [value[k] for k in sorted(value, key=int)]


def normalize(value: Any) -> Any:
    """Turn every index dict into a list, recursively (for endpoints without a schema)."""
    if is_index_dict(value):
        return [normalize(v) for v in index_dict_to_list(value)]
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value
