"""``make dev`` stops whatever signal it gets, keeps one consistent world across a restart,
and refuses to start on a busy port before starting anything."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import stripe

from tests.tools.devstack import (
    DevProcess,
    dev_environment,
    port_is_free,
    processes_using,
    start_dev,
)
from tools.devserver.routes import ROOT

pytestmark = pytest.mark.e2e

STOP_WITHIN_SECONDS = 10.0


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One state for the module: the database is created once, later starts reuse it.
    return tmp_path_factory.mktemp("devstate")


@pytest.fixture
def dev(state_dir: Path, tmp_path: Path) -> Iterator[DevProcess]:
    process = start_dev(state_dir, tmp_path / "dev.log")
    yield process
    process.stop()


def _assert_stopped_cleanly(dev: DevProcess, postmaster: int | None, started: float) -> None:
    try:
        code = dev.wait(timeout=STOP_WITHIN_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {STOP_WITHIN_SECONDS:.0f} s after the signal:\n{dev.text()}")
    assert code == 0, dev.text()
    assert postmaster is not None
    deadline = started + STOP_WITHIN_SECONDS
    while psutil.pid_exists(postmaster) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(postmaster), "the embedded Postgres is still running"
    assert processes_using(dev.state_dir) == []
    busy = [port for port in dev.ports() if not port_is_free(port)]
    assert busy == [], f"ports still taken: {busy}"
    assert not (dev.state_dir / "env").exists(), ".local/env outlived make dev"
    assert "stopped." in dev.text()


@pytest.mark.parametrize(
    ("signals", "gap"),
    [
        ([signal.SIGINT], 0.0),
        ([signal.SIGTERM], 0.0),
        ([signal.SIGHUP], 0.0),
        # A terminal's Ctrl-C pressed again while stopping.
        ([signal.SIGINT, signal.SIGINT, signal.SIGINT], 0.05),
        # make forwards SIGTERM: the process group's and make's own arrive together.
        ([signal.SIGTERM, signal.SIGTERM], 0.0),
    ],
    ids=["sigint", "sigterm", "sighup", "sigint-repeated", "sigterm-twice"],
)
def test_every_stop_signal_ends_every_part_postgres_included_within_ten_seconds(
    dev: DevProcess, signals: list[int], gap: float
) -> None:
    # Given a running make dev with its embedded Postgres
    postmaster = dev.postmaster_pid()
    assert postmaster is not None
    assert psutil.pid_exists(postmaster)

    # When its process group gets the signal(s)
    started = time.monotonic()
    for signum in signals:
        dev.signal_group(signum)
        time.sleep(gap)

    # Then it exits, Postgres is gone, every port is free and .local/env is removed
    _assert_stopped_cleanly(dev, postmaster, started)


def test_make_dev_run_by_make_stops_on_sigterm_to_the_group(
    state_dir: Path, tmp_path: Path
) -> None:
    # Given `make dev` itself (make forwards the SIGTERM it gets to the dev server)
    dev = start_dev(state_dir, tmp_path / "make-dev.log", command=["make", "-s", "dev"])
    try:
        postmaster = dev.postmaster_pid()

        # When the group is terminated
        started = time.monotonic()
        dev.signal_group(signal.SIGTERM)

        # Then make and everything it started are gone
        try:
            dev.wait(timeout=STOP_WITHIN_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make dev still running:\n{dev.text()}")
        assert postmaster is not None
        while psutil.pid_exists(postmaster) and time.monotonic() < started + 10:
            time.sleep(0.05)
        assert not psutil.pid_exists(postmaster)
        assert processes_using(state_dir) == []
        assert all(port_is_free(port) for port in dev.ports())
    finally:
        dev.stop()


def test_a_restart_keeps_the_emulators_objects_and_the_queues_dead_letters(
    state_dir: Path, tmp_path: Path
) -> None:
    # Given a customer in the emulator and a message parked in the dead-letter queue
    first = start_dev(state_dir, tmp_path / "first.log")
    try:
        client = stripe.StripeClient(
            first.values["STRIPE_SECRET_KEY"],
            base_addresses={"api": first.values["STRIPE_API_BASE"]},
        )
        customer = client.v1.customers.create(params={"metadata": {"member_id": "mem_kept"}})
        import boto3

        sqs = boto3.client(
            "sqs",
            endpoint_url=first.values["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        sqs.send_message(
            QueueUrl=first.values["WEBHOOK_DLQ_URL"],
            MessageBody='{"id": "evt_parked", "type": "invoice.paid"}',
            MessageAttributes={
                "stripe_event_id": {"DataType": "String", "StringValue": "evt_parked"},
                "stripe_event_type": {"DataType": "String", "StringValue": "invoice.paid"},
            },
        )
        # When make dev is stopped and started again
        first.signal_group(signal.SIGTERM)
        assert first.wait(timeout=STOP_WITHIN_SECONDS) == 0
    finally:
        first.stop()
    second = start_dev(state_dir, tmp_path / "second.log")
    try:
        # Then Stripe (the emulator) still knows the customer
        client = stripe.StripeClient(
            second.values["STRIPE_SECRET_KEY"],
            base_addresses={"api": second.values["STRIPE_API_BASE"]},
        )
        assert client.v1.customers.retrieve(customer.id).metadata["member_id"] == "mem_kept"
        # And the dead letter is still there for make redrive
        listed = subprocess.run(
            ["make", "-s", "redrive", "DRY_RUN=1"],
            cwd=ROOT,
            env=dev_environment(state_dir),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "would move evt_parked (invoice.paid)" in listed.stdout
        assert "objects restored" in second.text()
    finally:
        second.signal_group(signal.SIGTERM)
        second.wait(timeout=STOP_WITHIN_SECONDS)
        second.stop()


@pytest.mark.parametrize("variable", ["API_PORT", "STRIPE_EMULATOR_PORT", "LOCAL_SQS_PORT"])
def test_a_busy_port_is_one_line_naming_it_and_its_variable_before_anything_starts(
    tmp_path: Path, variable: str
) -> None:
    # Given something already listening on the port one part needs
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        state = tmp_path / "state"

        # When make dev starts
        result = subprocess.run(
            [sys.executable, "-m", "tools.devserver"],
            cwd=ROOT,
            env=dev_environment(state, **{variable: str(port)}),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Then it exits 2 with one line that names the port and the variable that moves it
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert str(port) in lines[0]
    assert variable in lines[0]
    assert "Traceback" not in result.stderr
    # And nothing was started: no database, no saved state
    assert not (state / "pgdata").exists()
    assert not (state / "env").exists()


def test_on_a_first_start_the_api_answers_the_emulators_first_webhooks(tmp_path: Path) -> None:
    # Given a first start, whose catalog seeding creates events the emulator delivers at once
    dev = start_dev(tmp_path / "fresh", tmp_path / "fresh.log")
    try:
        emulator = dev.values["STRIPE_API_BASE"]
        httpx.post(f"{emulator}/_emulator/webhooks/flush", json={"timeout": 20}).raise_for_status()

        # Then every delivery was answered: none was refused for want of a listening API
        summary = httpx.get(f"{emulator}/_emulator/state").json()["webhooks"]
        assert summary["delivered"] > 0
        assert summary["failed"] == 0
        assert summary["attempts"] == summary["delivered"]
        # And the webhook secret is this run's own, not a constant every copy shares
        assert dev.values["STRIPE_WEBHOOK_SECRET"].startswith("whsec_")
        assert dev.values["STRIPE_WEBHOOK_SECRET"] != "whsec_local_emulator_secret_0123456789"
    finally:
        dev.signal_group(signal.SIGINT)
        dev.wait(timeout=STOP_WITHIN_SECONDS)
        dev.stop()
