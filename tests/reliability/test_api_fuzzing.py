"""Schemathesis against the local API (``tools.reliability.fuzz``): no 5xx, every answer as
documented in the OpenAPI document, every error the contract's JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import ADMIN_ID, Stack
from tools.devserver.lambda_host import LambdaHost
from tools.devserver.server import ApiServer
from tools.reliability.fuzz import fuzz

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_url(stack: Stack) -> Iterator[str]:
    """The dev server's router on a free port, serving the real handlers."""
    server = ApiServer(("127.0.0.1", 0), host=LambdaHost(), static_root=None)
    server.start_in_thread()
    yield server.url
    server.shutdown()
    server.server_close()


def test_every_operation_answers_as_documented_to_generated_requests(
    api_url: str, stack: Stack
) -> None:
    # Given the API with an administrator's token (admin routes are reachable too)
    token = stack.token(ADMIN_ID)

    # When Schemathesis sends generated requests to every documented operation
    report = fuzz(api_url, lambda: token, max_examples=20)

    # Then no answer is a 5xx, undocumented, off-schema or without the error JSON
    assert report.failures == []
    assert report.operations >= 15
    assert report.cases >= report.operations * 10
