"""Fixtures of the reliability suite: the local stack of ``tests.stack`` and the chaos engine's
view of it."""

from __future__ import annotations

import pytest

from tests.stack import *  # noqa: F403
from tests.stack import ADMIN_ID, STRIPE_KEY, Stack
from tools.local.make_receiver import MakeReceiverServer
from tools.reliability.chaos import ChaosEnv


@pytest.fixture
def chaos_env(stack: Stack, db: str, make_receiver: MakeReceiverServer) -> ChaosEnv:
    """The engine's handle on the stack; the handlers' environment is ``service_env``'s."""
    return ChaosEnv(
        database_url=db,
        stripe_base=stack.emulator.base_url,
        stripe_key=STRIPE_KEY,
        mint_token=stack.token,
        make=make_receiver,
        admin_id=ADMIN_ID,
    )
