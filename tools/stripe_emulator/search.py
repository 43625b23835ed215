"""A subset of Stripe's Search Query Language.

Supported: clauses ``field:value`` (exact), ``field~value`` (substring), ``field>value``,
``<``, ``>=``, ``<=`` (numbers), ``-`` negation, ``metadata['key']:'value'``, values quoted with
``'`` or ``"`` (numbers may be bare) and the special value ``null``, joined by ``AND`` or ``OR``
(not both, as with Stripe).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tools.stripe_emulator.errors import StripeError

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?
        (?P<field>metadata\[(?:'[^']*'|"[^"]*")\]|[a-z_]+)
        (?P<op>:|~|>=|<=|>|<)
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s'"]+)\s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s+")


@dataclass
class Clause:
    """One ``field op value`` term."""

    field: str
    op: str
    value: str | None
    negate: bool

    def test(self, obj: dict[str, Any]) -> bool:
        """Evaluate the term against ``obj``."""
        if self.field.startswith("metadata["):
            actual: Any = (obj.get("metadata") or {}).get(self.field[10:-2])
        else:
            actual = obj.get(self.field)
        result = self._compare(actual)
        return not result if self.negate else result

    def _compare(self, actual: Any) -> bool:
        if self.value is None:
            return actual is None
        if self.op == ":":
            if isinstance(actual, bool):
                return str(actual).lower() == self.value.lower()
            if self.field == "email" and isinstance(actual, str):
                return actual.lower() == self.value.lower()
            return actual is not None and str(actual) == self.value
        if self.op == "~":
            return isinstance(actual, str) and self.value.lower() in actual.lower()
        try:
            bound = int(self.value)
        except ValueError:
            raise _error(f"'{self.value}' is not a number.") from None
        if not isinstance(actual, int):
            return False
        return {
            ">": actual > bound,
            "<": actual < bound,
            ">=": actual >= bound,
            "<=": actual <= bound,
        }[self.op]


def _error(detail: str) -> StripeError:
    return StripeError(f"Invalid search query: {detail}", param="query")


def parse(query: str, fields: frozenset[str], resource: str) -> Callable[[dict[str, Any]], bool]:
    """Compile ``query`` into a predicate; only ``fields`` (and metadata) may be searched."""
    clauses: list[Clause] = []
    joins: set[str] = set()
    pos = 0
    text = query.strip()
    if not text:
        raise _error("the query is empty.")
    while True:
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise _error(f"could not parse the query at position {pos}.")
        field, raw = match.group("field"), match.group("value")
        if not field.startswith("metadata[") and field not in fields:
            raise _error(
                f"Field `{field}` is an unsupported search field for resource `{resource}`."
            )
        value: str | None
        if raw[0] in "'\"":
            value = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif raw == "null":
            value = None
        else:
            value = raw
        if match.group("op") == "~" and (value is None or len(value) < 3):
            raise _error("substring searches need at least 3 characters.")
        clauses.append(Clause(field, match.group("op"), value, bool(match.group("neg"))))
        pos = match.end()
        if pos >= len(text):
            break
        join = _JOIN.match(text, pos)
        if join is None:
            raise _error(f"expected AND or OR at position {pos}.")
        joins.add(join.group(1))
        pos = join.end()
    if len(joins) > 1:
        raise _error("a query cannot combine AND and OR.")
    if joins == {"OR"}:
        return lambda obj: any(c.test(obj) for c in clauses)
    return lambda obj: all(c.test(obj) for c in clauses)


def search(
    items: list[dict[str, Any]],
    params: dict[str, Any],
    fields: frozenset[str],
    resource: str,
    url: str,
) -> dict[str, Any]:
    """Run a search request over ``items`` (newest first) and build the ``search_result``."""
    predicate = parse(params["query"], fields, resource)
    matched = [obj for obj in items if predicate(obj)]
    limit = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise StripeError("limit must be between 1 and 100.", param="limit")
    offset = 0
    if params.get("page"):
        try:
            offset = int(base64.urlsafe_b64decode(params["page"].encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise StripeError("Invalid page cursor.", param="page") from None
    page = matched[offset : offset + limit]
    has_more = offset + limit < len(matched)
    next_page = (
        base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if has_more else None
    )
    return {
        "object": "search_result",
        "data": page,
        "has_more": has_more,
        "next_page": next_page,
        "url": url,
    }
