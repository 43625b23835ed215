"""docs/webflow.md shows pictures that exist, and names only attributes the scripts in web/
really read or write."""

from __future__ import annotations

import re

import pytest

from tools.devserver.routes import ROOT

pytestmark = pytest.mark.unit

DOC = ROOT / "docs" / "webflow.md"


def test_every_picture_of_the_guide_is_committed() -> None:
    pictures = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", DOC.read_text(encoding="utf-8"))
    assert len(pictures) >= 6
    for picture in pictures:
        path = DOC.parent / picture
        assert path.is_file(), f"docs/webflow.md shows {picture}, which is missing"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_attribute_of_the_guide_is_one_the_scripts_read() -> None:
    text = DOC.read_text(encoding="utf-8")
    scripts = "".join(
        (ROOT / "web" / name).read_text(encoding="utf-8")
        for name in ("payments-embed.js", "payments-admin.js")
    )
    attributes = set(re.findall(r"`(data-(?:price|buy|subscribe|payment)[a-z-]*)`", text))
    assert {"data-payments-account", "data-payments-admin", "data-buy"} <= attributes
    for attribute in attributes:
        # Read as a selector, or written by the scripts (data-payment-state)
        assert f"[{attribute}" in scripts or f'"{attribute}"' in scripts, attribute
