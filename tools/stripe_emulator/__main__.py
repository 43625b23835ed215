"""``python -m tools.stripe_emulator``: run the Stripe emulator in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Sequence

from tools.stripe_emulator.server import start_emulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; environment variables give the defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.stripe_emulator", description="Offline Stripe API emulator."
    )
    parser.add_argument("--host", default=os.environ.get("STRIPE_EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("STRIPE_EMULATOR_PORT", "12111"))
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("STRIPE_SECRET_KEY") or None,
        help="only accept this key (default: any sk_test_ key)",
    )
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("STRIPE_EMULATOR_WEBHOOK_URL") or None,
        help="post events here, e.g. http://127.0.0.1:3000/v1/webhooks/stripe",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET") or None,
        help="whsec_ secret to sign events with (generated when not given)",
    )
    parser.add_argument(
        "--no-auto-deliver",
        action="store_true",
        help="keep events until POST /_emulator/events/deliver",
    )
    parser.add_argument(
        "--public-url",
        default=os.environ.get("STRIPE_EMULATOR_PUBLIC_URL") or None,
        help="base URL put in checkout session URLs (default: the listening address)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    handle = start_emulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        auto_deliver=not args.no_auto_deliver,
        public_url=args.public_url,
    )
    done = threading.Event()
    # SIGTERM as Ctrl-C: the handler only raises in the main thread, it takes no lock that the
    # interrupted wait may hold.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"Stripe emulator listening on {handle.base_url}", flush=True)
    print(f"  STRIPE_API_BASE={handle.base_url}", flush=True)
    if args.webhook_url:
        print(f"  webhooks -> {args.webhook_url}", flush=True)
    print(f"  STRIPE_WEBHOOK_SECRET={handle.webhook_secret}", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()


if __name__ == "__main__":
    main()
