"""The money invariants of docs/reliability.md, tested as a model (a bounded run; ``make
reliability`` runs a larger one). See ``tools/reliability/money_model.py``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests.conftest import truncate_state
from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, STRIPE_KEY
from tools.local.make_receiver import MakeReceiverServer
from tools.local.memberstack import MemberstackServer
from tools.reliability.money_model import ModelEnv, MoneyModel, Tally
from tools.stripe_emulator.server import EmulatorHandle

pytestmark = pytest.mark.integration


def test_money_invariants_hold_whatever_the_order_the_races_and_the_faults(
    service_env: pytest.MonkeyPatch,
    db: str,
    emulator: EmulatorHandle,
    memberstack: MemberstackServer,
    make_receiver: MakeReceiverServer,
) -> None:
    # Given the real handlers, worker and SQL on the emulator, and a model of what members,
    # admins, banks, Stripe's deliveries and failures can do, in any order
    tally = Tally()

    class Model(MoneyModel):
        env = ModelEnv(
            database_url=db,
            stripe_base=emulator.base_url,
            stripe_key=STRIPE_KEY,
            emulator=emulator.emulator,
            mint_token=memberstack.mint,
            make=make_receiver,
            admin_id=ADMIN_ID,
            fresh=lambda: truncate_state(db),
        )

    Model.tally = tally

    # When Hypothesis generates sequences of them
    run_state_machine_as_test(
        Model,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        ),
    )

    # Then every invariant held after every step (a violation fails the run above with the
    # shortest sequence Hypothesis found), and the run did real work
    __import__("pathlib").Path("/tmp/tally.txt").write_text(repr(tally))
    assert tally.violations == []
    assert tally.steps > 50
    assert tally.deliveries > 0
