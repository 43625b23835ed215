"""An offline, stateful stand-in for the Stripe API.

The real ``stripe`` client talks to it unchanged::

    from tools.stripe_emulator import start_emulator

    with start_emulator(port=0) as emu:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": emu.base_url})

See ``docs/emulator.md`` for the API it serves, the hosted Checkout page, webhooks and the
``/_emulator`` test helpers.
"""

from tools.stripe_emulator.server import EmulatorHandle, start_emulator

__all__ = ["EmulatorHandle", "start_emulator"]
