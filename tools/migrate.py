"""``make migrate``: apply ``supabase/migrations`` to ``DATABASE_URL`` (or the embedded one)."""

from __future__ import annotations

import sys

from tools.db import apply_migrations, database_url


def main() -> int:
    applied = apply_migrations(database_url())
    print("applied:", ", ".join(applied) if applied else "nothing (up to date)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
