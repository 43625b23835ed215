"""The Make.com receiver behaves like a keyed Make.com custom webhook."""

from __future__ import annotations

import httpx
import pytest

from tests.tools.conftest import MAKE_KEY
from tools.local.make_receiver import MakeReceiverServer

pytestmark = pytest.mark.integration

PROJECT = {"member_id": "mem_1", "project": {"name": "Kitchen", "amount": 4200}}


def post(server: MakeReceiverServer, payload: object, key: str | None = MAKE_KEY) -> httpx.Response:
    headers = {} if key is None else {"x-make-apikey": key}
    return httpx.post(f"{server.url}/", json=payload, headers=headers)


def test_payload_is_accepted_recorded_and_printed(
    make_receiver: MakeReceiverServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the receiver, when the service posts a project with the right key
    response = post(make_receiver, PROJECT)

    # Then it answers like Make.com and keeps the payload
    assert response.status_code == 200
    assert response.text == "Accepted"
    assert make_receiver.received == [PROJECT]
    assert httpx.get(f"{make_receiver.url}/_received").json() == [PROJECT]
    # And prints it as one line
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("make.com add_project received: {")
    assert '"name": "Kitchen"' in lines[0]


def test_any_path_is_a_webhook(make_receiver: MakeReceiverServer) -> None:
    response = httpx.post(
        f"{make_receiver.url}/hook/abc123", json={"n": 1}, headers={"x-make-apikey": MAKE_KEY}
    )
    assert response.status_code == 200
    assert make_receiver.received == [{"n": 1}]


@pytest.mark.parametrize("key", [None, "", "make_wrong"], ids=["missing", "empty", "wrong"])
def test_wrong_or_missing_key_is_rejected_and_not_recorded(
    make_receiver: MakeReceiverServer, key: str | None
) -> None:
    response = post(make_receiver, PROJECT, key=key)

    assert response.status_code == 401
    assert make_receiver.received == []


def test_invalid_json_is_rejected(make_receiver: MakeReceiverServer) -> None:
    response = httpx.post(
        make_receiver.url, content=b"{not json", headers={"x-make-apikey": MAKE_KEY}
    )
    assert response.status_code == 400
    assert make_receiver.received == []


def test_fault_knob_fails_the_next_posts_then_recovers(make_receiver: MakeReceiverServer) -> None:
    # Given the receiver told to fail the next two posts with 503
    knob = httpx.post(f"{make_receiver.url}/_faults", json={"status": 503, "times": 2})
    assert knob.status_code == 200

    # When the service posts three times
    statuses = [post(make_receiver, {"attempt": n}).status_code for n in range(3)]

    # Then the first two fail, the third is accepted, and only it is recorded
    assert statuses == [503, 503, 200]
    assert make_receiver.received == [{"attempt": 2}]


def test_fault_applies_before_the_key_check(make_receiver: MakeReceiverServer) -> None:
    # An outage answers every caller the same, whatever key it presents.
    make_receiver.inject_fault(500, 1)
    assert post(make_receiver, PROJECT, key="make_wrong").status_code == 500
    assert post(make_receiver, PROJECT).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"status": 200, "times": 1}, {"status": 503, "times": -1}, {"status": "503"}, [1]],
    ids=["success-status", "negative-times", "string-status", "not-an-object"],
)
def test_invalid_fault_settings_are_rejected(
    make_receiver: MakeReceiverServer, body: object
) -> None:
    response = httpx.post(f"{make_receiver.url}/_faults", json=body)

    assert response.status_code == 400
    assert post(make_receiver, PROJECT).status_code == 200


def test_received_payloads_can_be_cleared(make_receiver: MakeReceiverServer) -> None:
    post(make_receiver, PROJECT)

    assert httpx.delete(f"{make_receiver.url}/_received").status_code == 200

    assert make_receiver.received == []
    assert httpx.get(f"{make_receiver.url}/_received").json() == []
