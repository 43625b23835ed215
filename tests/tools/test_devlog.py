"""The dev log: each line credited to the function that wrote it, compact unless JSON."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from payments.observability import logger
from tools.devserver import devlog
from tools.devserver.lambda_host import LambdaHost

pytestmark = pytest.mark.unit


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The service logger writing to a buffer through the dev log; logging restored after."""
    handler = logger.registered_handler
    formatter, stream = handler.formatter, getattr(handler, "stream", None)
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("tools", "werkzeug")}
    service = logging.getLogger(logger.name)
    propagate = service.propagate
    buffer = io.StringIO()
    yield buffer
    handler.setFormatter(formatter)
    if stream is not None:
        handler.setStream(stream)  # type: ignore[attr-defined]
    root.handlers[:] = root_handlers
    root.setLevel(root_level)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    service.propagate = propagate


def _two_overlapping_functions(host: LambdaHost) -> None:
    """Two handlers that log while both are running, in two threads, as overlapping requests."""
    both_running = threading.Barrier(2)

    def handler(name: str) -> Any:
        @logger.inject_lambda_context(clear_state=True)
        def lambda_handler(event: dict[str, Any], context: Any) -> None:
            both_running.wait(timeout=5)
            logger.info(f"hello from {name}", extra={"step": name})
            both_running.wait(timeout=5)

        return lambda_handler

    host._handlers = {"a.lambda_handler": handler("A"), "b.lambda_handler": handler("B")}
    host._locks = {"a.lambda_handler": threading.Lock(), "b.lambda_handler": threading.Lock()}
    threads = [
        threading.Thread(target=host.invoke, args=(module, {}), kwargs={"function_name": name})
        for module, name in (("a", "AFunction"), ("b", "BFunction"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def test_overlapping_invocations_each_credit_their_own_lines(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the compact log and two functions whose requests overlap in one process
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    devlog.configure(captured)

    _two_overlapping_functions(LambdaHost())

    # Then each line names the function that wrote it, with its extra keys
    lines = [line for line in captured.getvalue().splitlines() if "hello from" in line]
    assert len(lines) == 2
    for line in lines:
        writer = "AFunction" if "hello from A" in line else "BFunction"
        assert f"  {writer}  " in line.replace(" " * 3, "  ")
        assert "{" not in line  # compact, not JSON
    assert any("step=A" in line for line in lines)


def test_json_logs_stay_json_with_the_right_function(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    devlog.configure(captured)

    _two_overlapping_functions(LambdaHost())

    records = [json.loads(line) for line in captured.getvalue().splitlines() if line.strip()]
    by_message = {record["message"]: record for record in records}
    assert by_message["hello from A"]["function_name"] == "AFunction"
    assert by_message["hello from B"]["function_name"] == "BFunction"


def test_a_secret_never_reaches_the_terminal(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    devlog.configure(captured)

    logger.info("calling stripe", extra={"authorization": "Bearer abcdefghijklmnop"})
    logger.info("key sk_test_abcdefghijklmnop in a message")

    text = captured.getvalue()
    assert "abcdefghijklmnop" not in text


def test_a_request_line_has_method_path_status_time_and_function(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)

    devlog.request_line("POST", "/v1/checkout/sessions", 201, 23.4, "CreateCheckoutFunction")

    line = capsys.readouterr().out.strip()
    assert line.endswith("POST /v1/checkout/sessions -> 201 (23 ms)")
    assert "CreateCheckoutFunction" in line
