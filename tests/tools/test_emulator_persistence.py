"""The Stripe emulator's store survives a restart whole, and only in the world it belongs to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe

from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.persistence import EmulatorPersistence, dump_store, load_store
from tools.stripe_emulator.server import EmulatorHandle
from tools.stripe_emulator.state import Store

pytestmark = pytest.mark.integration

KEY = "sk_test_persistence_0123456789"


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator(port=0, api_key=KEY, auto_deliver=False)
    yield handle
    handle.stop()


def _client(handle: EmulatorHandle) -> stripe.StripeClient:
    return stripe.StripeClient(KEY, base_addresses={"api": handle.base_url}, max_network_retries=0)


def test_a_restored_emulator_knows_the_objects_ids_and_idempotency_keys_of_the_last_run(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given a customer created with an idempotency key, and the clock moved, in one run
    path = tmp_path / "emulator.pickle"
    saver = EmulatorPersistence(emulator, path, world="db-1")
    saver.start()
    customer = _client(emulator).v1.customers.create(
        params={"email": "kept@example.com"}, options={"idempotency_key": "create-kept"}
    )
    httpx.post(
        f"{emulator.base_url}/_emulator/clock", json={"advance_seconds": 3600}
    ).raise_for_status()
    saver.close()

    # When a new emulator restores the save
    with start_emulator(port=0, api_key=KEY, auto_deliver=False) as second:
        restored = EmulatorPersistence(second, path, world="db-1").restore()
        client = _client(second)

        # Then the customer, its events, the replayed key and the clock come back
        assert restored.objects >= 2
        assert client.v1.customers.retrieve(customer.id).email == "kept@example.com"
        again = client.v1.customers.create(
            params={"email": "kept@example.com"}, options={"idempotency_key": "create-kept"}
        )
        assert again.id == customer.id
        assert second.emulator.store.clock_offset == emulator.emulator.store.clock_offset != 0


def test_a_save_from_another_database_is_not_restored(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given a save made beside a database that has since been recreated
    path = tmp_path / "emulator.pickle"
    _client(emulator).v1.customers.create(params={"email": "old@example.com"})
    EmulatorPersistence(emulator, path, world="db-old").save()

    # When an emulator beside the new database restores
    with start_emulator(port=0, api_key=KEY, auto_deliver=False) as second:
        restored = EmulatorPersistence(second, path, world="db-new").restore()

        # Then it starts empty, and says why
        assert restored.objects == 0
        assert "no longer exists" in restored.note
        assert second.emulator.store.objects == {}


def test_an_unreadable_save_is_set_aside_and_the_emulator_starts_empty(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    path = tmp_path / "emulator.pickle"
    path.write_bytes(b"not a pickle")

    restored = EmulatorPersistence(emulator, path, world="db").restore()

    assert restored.objects == 0
    assert "make reset" in restored.note
    assert (tmp_path / "emulator.pickle.unreadable").read_bytes() == b"not a pickle"
    assert not path.exists()


def test_changes_made_through_the_api_are_saved_without_a_stop(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given background saving
    path = tmp_path / "emulator.pickle"
    saver = EmulatorPersistence(emulator, path, world="db")
    saver.start()
    try:
        # When a customer is created and a moment passes (a process killed now keeps it)
        customer = _client(emulator).v1.customers.create(params={"name": "Saved"})
        with start_emulator(port=0, api_key=KEY, auto_deliver=False) as reader:
            for _ in range(50):
                if path.exists():
                    EmulatorPersistence(reader, path, world="db").restore()
                    if customer.id in reader.emulator.store.objects:
                        break
                time.sleep(0.1)
            # Then the save on disk already holds it
            assert customer.id in reader.emulator.store.objects
    finally:
        saver.close()


def test_restoring_refills_the_stores_containers_in_place() -> None:
    # Other parts of the emulator hold references to the store's dicts and lists.
    source, target = Store(), Store()
    source.add({"id": "cus_1", "object": "customer"})
    objects, order = target.objects, target.order

    load_store(target, dump_store(source))

    assert target.objects is objects
    assert target.order is order
    assert objects["cus_1"] == {"id": "cus_1", "object": "customer"}
    assert order == {"customer": ["cus_1"]}
