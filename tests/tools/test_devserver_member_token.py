"""The dev server's local-only ``POST /_local/member-token`` (the demo page's member picker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tools.devserver.server import LOCAL_MEMBER_TOKEN_PATH, ApiServer
from tools.local.memberstack import MemberstackServer, start_memberstack

pytestmark = pytest.mark.integration


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemberstackServer]:
    key_file = tmp_path / "key.pem"
    monkeypatch.setenv("MEMBERSTACK_STANDIN_KEY_FILE", str(key_file))
    monkeypatch.setenv("MEMBERSTACK_APP_ID", "app_demo_test")
    server = start_memberstack(0, secret_key="sk_sb_demo", key_path=key_file)
    monkeypatch.setenv("MEMBERSTACK_API_BASE", server.url)
    yield server
    server.stop()


@pytest.fixture
def api() -> Iterator[str]:
    server = ApiServer(("127.0.0.1", 0), routes=[], static_root=None)
    server.start_in_thread()
    yield f"{server.url}{LOCAL_MEMBER_TOKEN_PATH}"
    server.shutdown()
    server.server_close()


def test_it_mints_a_token_the_memberstack_standin_accepts(
    standin: MemberstackServer, api: str
) -> None:
    answer = httpx.post(api, json={"member_id": "mem_demo_alice"})

    assert answer.status_code == 201
    assert answer.headers["cache-control"] == "no-store"
    claims = standin.standin.verify(answer.json()["token"])
    assert claims is not None
    assert claims["id"] == "mem_demo_alice"


@pytest.mark.parametrize("body", [{}, {"member_id": "alice"}, {"member_id": "mem_a b"}, []])
def test_it_refuses_anything_but_a_member_id(
    standin: MemberstackServer, api: str, body: object
) -> None:
    answer = httpx.post(api, json=body)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_member_id"


def test_it_does_not_exist_when_tokens_are_verified_by_real_memberstack(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMBERSTACK_API_BASE", "https://admin.memberstack.com")

    answer = httpx.post(api, json={"member_id": "mem_demo_alice"})

    assert answer.status_code == 404
