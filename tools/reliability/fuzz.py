"""API fuzzing with Schemathesis against the local API.

Every operation of ``shared/payments/openapi.json`` gets generated requests (valid and
invalid), sent over HTTP to the dev server's router (``tools.devserver.server.ApiServer``,
which runs the real handlers) with a Memberstack bearer token. Each answer must not be a 5xx,
must match the document (a documented status code, content type and schema) and, for an
error, be the contract's ``{"error": {"code", "message"}}``.

The caller starts the server with the environment the handlers need (the local stand-ins);
:func:`fuzz` only talks HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.core.failures import FailureGroup

from tools.devserver.routes import ROOT

DOCUMENT = ROOT / "shared" / "payments" / "openapi.json"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Stripe's webhook is guarded by its signature, not the schema; the attack matrix covers it.
SKIPPED = {("POST", "/v1/webhooks/stripe")}


@dataclass
class FuzzReport:
    cases: int = 0
    operations: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "cases": self.cases,
            "responses_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "failures": len(self.failures),
        }


def _error_body_problem(status: int, text: str) -> str | None:
    if status < 400:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status} without a JSON body"
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(error, dict)
        and isinstance(error.get("code"), str)
        and isinstance(error.get("message"), str)
    ):
        return f"{status} without the error JSON: {text[:200]}"
    return None


def _first_line(failure: BaseException) -> str:
    title = getattr(failure, "title", None)
    lines = str(failure).strip().splitlines()
    detail = next((line.strip() for line in lines[1:] if line.strip()), "")
    return f"{title or type(failure).__name__}: {detail[:160]}"


def fuzz(
    base_url: str, token: Callable[[], str], *, max_examples: int, seed: int = 0
) -> FuzzReport:
    """Fuzz every operation of the document against ``base_url``; never raises on a finding."""
    schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text(encoding="utf-8")))
    report = FuzzReport()
    for result in schema.get_all_operations():
        # An operation the document cannot describe raises here: a finding in itself.
        operation = cast(Any, result).ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        report.operations += 1
        _fuzz_operation(operation, base_url, token, max_examples, seed, report)
    return report


def _fuzz_operation(
    operation: Any,
    base_url: str,
    token: Callable[[], str],
    max_examples: int,
    seed: int,
    report: FuzzReport,
) -> None:
    seen: set[str] = set()

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        report.cases += 1
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token()}"})
        report.by_status[response.status_code] = report.by_status.get(response.status_code, 0) + 1
        problems = []
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            # A finding, recorded with its request; the run goes on to the next case.
            problems += [_first_line(failure) for failure in group.exceptions]
        found = _error_body_problem(response.status_code, response.text)
        if found:
            problems.append(found)
        for problem in problems:
            key = f"{operation.method.upper()} {operation.path}: {problem}"
            if key not in seen:
                seen.add(key)
                report.failures.append(f"{key} (e.g. {case.method} {case.formatted_path})")

    check()
