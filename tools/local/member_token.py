"""Print a member token the local Memberstack stand-in accepts.

Usage::

    python -m tools.local.member_token mem_123 [--ttl 3600] [--email a@b.c]
    python -m tools.local.member_token --admin            # mem_admin_local

Only the token goes to stdout, so ``TOKEN=$(python -m tools.local.member_token mem_123)``
works; reminders go to stderr. The token is signed with the shared key file the stand-in uses
(``.local/memberstack/key.pem``), so the stand-in may be started before or after.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tools.local.memberstack import (
    LOCAL_ADMIN_MEMBER_ID,
    configured_app_id,
    key_file_path,
    load_or_create_signing_key,
    mint_token,
)

ADMIN_IDS_ENV = "ADMIN_MEMBER_IDS"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.local.member_token",
        description="Mint a local Memberstack member token (RS256 JWT).",
    )
    parser.add_argument(
        "member_id",
        nargs="?",
        help=f"member id, e.g. mem_123 (with --admin defaults to {LOCAL_ADMIN_MEMBER_ID})",
    )
    parser.add_argument(
        "--admin",
        action="store_true",
        help=f"token for an admin; the id must be listed in {ADMIN_IDS_ENV}",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (3600)")
    parser.add_argument("--email", help="optional email claim")
    parser.add_argument("--app-id", help="aud claim (default: MEMBERSTACK_APP_ID or local)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    member_id: str | None = args.member_id
    if member_id is None:
        if not args.admin:
            parser.error("member_id is required (or use --admin)")
        member_id = LOCAL_ADMIN_MEMBER_ID
    if args.ttl <= 0:
        parser.error("--ttl must be positive")

    if args.admin:
        admin_ids = {part.strip() for part in os.environ.get(ADMIN_IDS_ENV, "").split(",")}
        if member_id in admin_ids:
            print(f"{member_id} is in {ADMIN_IDS_ENV}.", file=sys.stderr)
        else:
            print(
                f"Reminder: admin routes accept this token only if {member_id} is listed in "
                f"{ADMIN_IDS_ENV} of the service (comma-separated).",
                file=sys.stderr,
            )

    token = mint_token(
        member_id,
        app_id=args.app_id or configured_app_id(),
        ttl_seconds=args.ttl,
        email=args.email,
        key=load_or_create_signing_key(key_file_path()),
    )
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
