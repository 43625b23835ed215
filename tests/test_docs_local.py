"""docs/local.md and the README say only what works: every ``sam local invoke`` line names a real
function and event, and every command they show against ``make dev`` runs, verbatim, against a
running one."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.devserver.routes import ROOT, function_names

DOC = ROOT / "docs" / "local.md"
RUNS_AGAINST_DEV = "<!-- runs against make dev -->"
NEEDS_RECONCILE = "<!-- runs against make dev: reconcile -->"
# The docs show make dev's default addresses; the test's make dev listens on free ports.
DEFAULT_PORTS = {
    "API_URL": 3000,
    "STRIPE_API_BASE": 12111,
    "MEMBERSTACK_API_BASE": 12112,
    "MAKE_WEBHOOK_URL": 12113,
    "AWS_ENDPOINT_URL": 12114,
}


def _blocks(doc: Path = DOC) -> list[tuple[str, str]]:
    """Every ```bash block of the doc with the comment line just above it."""
    found = re.finditer(r"(?ms)^(?P<marker>[^\n]*)\n```bash\n(?P<body>.*?)^```", doc.read_text())
    return [(match["marker"].strip(), match["body"]) for match in found]


@pytest.mark.unit
def test_every_function_has_its_sam_local_invoke_line_with_an_existing_event() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name, resource in function_names().items():
        folder = resource["Properties"]["CodeUri"].strip("/").split("/")[-1]
        event = f"events/{folder}.json"
        assert (ROOT / event).is_file(), f"{event} is missing"
        line = next((ln for ln in text.splitlines() if f"sam local invoke {name} " in ln), "")
        assert f"-e {event}" in line, f"docs/local.md: add `sam local invoke {name} -e {event}`"


@pytest.mark.unit
def test_every_shell_block_says_whether_it_runs_against_make_dev() -> None:
    unmarked = [
        body.splitlines()[0]
        for marker, body in _blocks()
        if not (
            marker.startswith("<!-- runs against make dev") or marker.startswith("<!-- not run")
        )
    ]
    assert unmarked == [], f"mark these blocks in docs/local.md: {unmarked}"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.tools.devstack import start_dev

    base = tmp_path_factory.mktemp("docs-dev")
    process = start_dev(base / "state", base / "dev.log")
    yield process
    process.stop()


def _verbatim(body: str, dev: object) -> str:
    """The block as the doc shows it, pointed at the test's make dev."""
    from tests.tools.devstack import DevProcess

    assert isinstance(dev, DevProcess)
    for variable, default in DEFAULT_PORTS.items():
        port = re.search(r":(\d+)", dev.values[variable].split("//", 1)[1])
        assert port is not None
        body = body.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port.group(1)}")
    return body.replace(".local/env", str(dev.state_dir / "env"))


def _run(script: str, dev: object) -> subprocess.CompletedProcess[str]:
    from tests.tools.devstack import DevProcess, dev_environment

    assert isinstance(dev, DevProcess)
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=ROOT,
        env=dev_environment(dev.state_dir),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.e2e
def test_every_command_the_doc_shows_runs_against_make_dev(dev: object) -> None:
    # Given a running make dev, and the doc's blocks in the order a reader types them
    script = "\n".join(
        _verbatim(body, dev) for marker, body in _blocks() if marker == RUNS_AGAINST_DEV
    )
    assert "make token MEMBER=mem_123" in script

    # When they run in one shell, every command exiting 0
    result = _run(script, dev)

    # Then each did what the doc says
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out = result.stdout
    assert '"products"' in out
    assert '"url": "http://127.0.0.1:' in out or '"url":"http://127.0.0.1:' in out
    # The payment made with the emulator's helper reached the member's history and Make.com.
    assert '"product":"website_audit_feedback"' in out.replace(" ", "")
    assert '"status":"paid"' in out.replace(" ", "")
    # The Make.com receiver's list holds the add_project payload of that purchase.
    received = out[out.index('[{"') :]
    assert '"product": "website_audit_feedback"' in received
    assert '"member_id": "mem_123"' in received
    assert "would move 0 message(s) from the dead-letter queue" in out
    assert "undelivered event(s) from the last 30 day(s)" in out
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_the_readmes_try_it_runs_against_make_dev(dev: object) -> None:
    # Given the README's "Try it" block, verbatim
    [body] = [body for marker, body in _blocks(ROOT / "README.md") if marker == RUNS_AGAINST_DEV]

    # When it runs against a running make dev
    result = _run(_verbatim(body, dev), dev)

    # Then the prices came back and the checkout answered with the emulator's payment page
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert '"products"' in result.stdout
    assert '"url":"http://127.0.0.1:' in result.stdout.replace(" ", "")
    assert "Traceback" not in result.stderr


@pytest.mark.e2e
def test_make_reconcile_runs_the_reconciler_once_against_make_dev(dev: object) -> None:
    bodies = [body for marker, body in _blocks() if marker == NEEDS_RECONCILE]
    assert bodies == ["make reconcile\n"]

    result = _run(_verbatim(bodies[0], dev), dev)

    assert result.returncode == 0, result.stderr
    assert '"status": "ok"' in result.stdout
    assert '"stuck": 0' in result.stdout


@pytest.mark.unit
def test_the_doc_shows_the_local_state_files_make_reset_wipes() -> None:
    from tools.devserver.__main__ import EMULATOR_STATE, QUEUE_STATE

    text = DOC.read_text(encoding="utf-8")
    assert f".local/{EMULATOR_STATE}" in text
    assert f".local/{QUEUE_STATE}" in text
    assert Path(ROOT / "tools" / "devserver" / "reset.py").is_file()
