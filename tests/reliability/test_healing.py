"""The reconciler heals a bad day: the same seeded journey, run cleanly and with dropped
deliveries, Make.com down and Stripe refunds failing, ends in the same state once the
reconciler has run (tools/reliability/healing.py; ``make reliability`` runs more seeds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import truncate_state
from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, STRIPE_KEY, WEBHOOK_SECRET
from tools.local.make_receiver import MakeReceiverServer
from tools.local.memberstack import MemberstackServer
from tools.reliability.healing import HealingFaults, HealingStack, compare, run_journey
from tools.seed_stripe import seed_catalog
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


def _fresh_emulator() -> EmulatorHandle:
    handle = start_emulator(
        port=0, api_key=STRIPE_KEY, webhook_secret=WEBHOOK_SECRET, auto_deliver=False
    )
    seed_catalog(STRIPE_KEY, handle.base_url, quiet=True)
    return handle


@pytest.fixture
def emulators() -> Iterator[list[EmulatorHandle]]:
    handles: list[EmulatorHandle] = []
    yield handles
    for handle in handles:
        handle.stop()


@pytest.mark.parametrize("seed", [20261201, 7])
def test_a_bad_day_heals_to_the_state_of_a_good_one_without_anyone_acting(
    service_env: pytest.MonkeyPatch,
    db: str,
    memberstack: MemberstackServer,
    make_receiver: MakeReceiverServer,
    emulators: list[EmulatorHandle],
    seed: int,
) -> None:
    def stack() -> HealingStack:
        emulator = _fresh_emulator()
        emulators.append(emulator)
        service_env.setenv("STRIPE_API_BASE", emulator.base_url)
        truncate_state(db)
        make_receiver.receiver.clear()
        from payments.settings import get_settings

        # Settings are read again with the new emulator: every cached client is keyed on them.
        get_settings.cache_clear()
        return HealingStack(db, emulator, STRIPE_KEY, make_receiver, memberstack.mint, ADMIN_ID)

    # Given one seeded journey on a good day
    clean, clean_figures = run_journey(stack(), seed, None)
    # When the same journey runs on a bad day and nobody does anything but the reconciler
    faults = HealingFaults(drop_rate=0.35, make_outage=0.5, refund_failures=2)
    healed, figures = run_journey(stack(), seed, faults)
    # Then the two days end in the same state
    assert compare(clean, healed) == []
    assert figures.differences == []
    # And the bad day was bad, and it healed
    assert figures.deliveries_dropped > 0
    assert figures.events_healed > 0
    assert clean_figures.events_healed == 0
    assert figures.dispatches_drained > 0  # Make.com was down, and nobody redrove anything
