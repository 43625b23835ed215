"""The README is the operator's first page: every setting the service reads is in its
Configuration table, every page it links to exists, and every make target it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from payments.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README[README.index("## Configuration") : README.index("## Deploying")]
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in table]
    assert missing == []


def test_every_linked_page_exists() -> None:
    links = re.findall(r"\]\(((?:docs/)[^)#\s]+)(?:#[^)]*)?\)", README)
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_every_make_target_named_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([a-z][a-z_-]*):", makefile, flags=re.MULTILINE))
    named = set(re.findall(r"`make ([a-z][a-z_-]*)", README))
    assert named
    assert named - defined == set()
