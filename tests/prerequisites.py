"""System programs some tests need (PostgreSQL 15's server, Debian's Chromium).

On a developer's machine without them those tests are skipped, with the reason. CI installs
both (``.ci/run``) and sets ``PAYMENTS_TESTS_REQUIRE_ALL=1``: there a missing program fails the
run instead, so a skip can never hide a test that did not run.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("PAYMENTS_TESTS_REQUIRE_ALL", "").strip() not in ("", "0")


def missing(what: str) -> None:
    """Inside a test: skip for want of ``what``, or fail where everything must run."""
    if REQUIRE_ALL:
        pytest.fail(f"{what} (PAYMENTS_TESTS_REQUIRE_ALL is set)")
    pytest.skip(what)


def needs(available: bool, what: str) -> pytest.MarkDecorator:
    """A module or test mark: skipped without ``what``, and where everything must run, a
    collection error naming it."""
    if not available and REQUIRE_ALL:
        raise RuntimeError(f"{what} (PAYMENTS_TESTS_REQUIRE_ALL is set)")
    return pytest.mark.skipif(not available, reason=what)
