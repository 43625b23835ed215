"""Latency injection in the stand-ins: each call waits the configured delay and is logged, so
the bench can time a buyer's click under real-world delays and count what it waited for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from tools.bench.latency_model import DelayedStore, Sample, measure, summarise
from tools.bench.sqs_stub import SqsStub
from tools.local.latency import CallLog, Latency
from tools.local.memberstack import MemberstackServer
from tools.stripe_emulator import EmulatorHandle, start_emulator

pytestmark = pytest.mark.integration

DELAY = 0.08


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_a_stand_in_with_a_latency_answers_that_much_later_and_logs_the_call(
    memberstack: MemberstackServer,
) -> None:
    # Given the Memberstack stand-in with an 80 ms delay per call
    log = CallLog()
    memberstack.latency = Latency("memberstack", DELAY, log)
    url = f"{memberstack.url}/.well-known/jwks.json"
    httpx.get(url)  # the connection and the server thread are warm

    # When its key set is fetched
    with httpx.Client() as client:
        elapsed = timed(lambda: client.get(url).raise_for_status())

    # Then the answer took at least the delay, and the call is in the log with its route
    assert elapsed >= DELAY
    assert [(c.kind, c.name) for c in log.started_between(0, time.perf_counter())][-1] == (
        "memberstack",
        "GET /.well-known/jwks.json",
    )

    # And without a latency it answers at once again
    memberstack.latency = None
    with httpx.Client() as client:
        assert timed(lambda: client.get(url).raise_for_status()) < DELAY


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator(port=0, api_key="sk_test_latency_123", auto_deliver=False)
    yield handle
    handle.stop()


def test_the_emulator_delays_each_api_call_but_not_its_helpers(emulator: EmulatorHandle) -> None:
    log = CallLog()
    emulator.server.latency = Latency("stripe", DELAY, log)
    client = stripe.StripeClient(
        "sk_test_latency_123", base_addresses={"api": emulator.base_url}, max_network_retries=0
    )

    api = timed(lambda: client.v1.customers.create(params={"metadata": {"member_id": "m"}}))
    helper = timed(lambda: httpx.get(f"{emulator.base_url}/healthz").raise_for_status())

    assert api >= DELAY > helper
    assert [(c.kind, c.name) for c in log.started_between(0, time.perf_counter())] == [
        ("stripe", "POST /v1/customers")
    ]


def test_the_sqs_stub_delays_each_send_and_names_the_operation() -> None:
    from payments.adapters.queue import EventQueue, json_sqs_client

    stub, log = SqsStub(), CallLog()
    stub.latency = Latency("sqs", DELAY, log)
    try:
        queue_url = f"{stub.url}/000000000000/q"
        queue = EventQueue(queue_url, json_sqs_client(queue_url, stub.url))
        elapsed = timed(lambda: queue.send_event("{}", event_id="evt_1", event_type="t"))
    finally:
        stub.stop()

    assert elapsed >= DELAY
    assert [c.name for c in log.started_between(0, time.perf_counter())] == [
        "AmazonSQS.SendMessage"
    ]


class _Store:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def call(self, function: str, **params: Any) -> Any:
        self.calls.append(function)
        return params

    def call_as_member(self, member_id: str, function: str, **params: Any) -> Any:
        self.calls.append(f"{member_id}:{function}")
        return None


@pytest.mark.unit
def test_the_delayed_store_delays_each_rpc_and_the_measure_counts_what_was_waited_for() -> None:
    # Given a store whose calls each cost 80 ms
    inner, log = _Store(), CallLog()
    store = DelayedStore(inner, Latency("database", DELAY, log))

    # When a request makes two calls one after the other
    def request() -> None:
        assert store.call("customer_for_member", p_member_id="m") == {"p_member_id": "m"}
        store.call_as_member("m", "my_payments")

    sample: Sample = measure(log, request)

    # Then it took both delays, and both calls were on its critical path
    assert sample.wall_ms >= 2 * DELAY * 1000
    assert sample.waited == {"database": 2}
    assert not sample.background
    assert inner.calls == ["customer_for_member", "m:my_payments"]
    summary = summarise([sample])
    assert summary["calls"]["database"]["median"] == 2
    assert summary["calls_by_route"] == {
        "database: rpc customer_for_member": 1,
        "database: rpc my_payments (as member)": 1,
    }
