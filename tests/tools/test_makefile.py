"""The Makefile: ``make help`` lists every target, and ``make dev`` installs no test tool."""

from __future__ import annotations

import re
import subprocess

import pytest

from tools.devserver.routes import ROOT

pytestmark = pytest.mark.unit


def _targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"(?m)^([a-z][a-z_-]*):", text))


def test_make_help_lists_every_target() -> None:
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    listed = set(re.findall(r"(?m)^  make (\S+)", shown))

    assert listed == _targets()


def test_make_dev_installs_the_runtime_and_the_stand_ins_but_no_test_tool() -> None:
    local = (ROOT / "requirements-local.txt").read_text(encoding="utf-8")
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")

    assert "-r requirements.txt" in local
    assert "-r requirements-local.txt" in dev
    for tool in ("pytest", "ruff", "mypy", "cfn-lint", "schemathesis", "playwright", "hypothesis"):
        assert not re.search(rf"(?mi)^{tool}\b", local), f"{tool} belongs in requirements-dev.txt"
    assert re.search(r"(?m)^dev: \$\(LOCAL_STAMP\)", makefile)
    assert re.search(r"(?m)^unit: \$\(DEV_STAMP\)", makefile)


@pytest.mark.parametrize(
    ("target", "tool"),
    [("redrive", "redrive_dlq"), ("recover", "recover_events"), ("reconcile", "reconcile")],
)
def test_dry_run_reaches_every_operator_tool(target: str, tool: str) -> None:
    # make -n prints the recipe without running it (the stamps are up to date here)
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", target, "DRY_RUN=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    [line] = [line for line in recipe.splitlines() if f"tools.{tool}" in line]
    assert "--dry-run" in line
