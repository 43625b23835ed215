"""Member authentication against the Memberstack stand-in: real RS256 tokens, real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from payments import errors
from payments.adapters.memberstack import MemberstackVerifier
from payments.auth import Member, authenticate, bearer_token, require_admin
from tools.local.memberstack import MemberstackServer, mint_token, start_memberstack

pytestmark = pytest.mark.integration

APP_ID = "app_test_payments"
SECRET = "sk_sb_test_secret"


@pytest.fixture(scope="module")
def memberstack() -> Iterator[MemberstackServer]:
    server = start_memberstack(0, secret_key=SECRET, app_id=APP_ID)
    yield server
    server.stop()


@pytest.fixture
def verifier(memberstack: MemberstackServer) -> MemberstackVerifier:
    return MemberstackVerifier(memberstack.url, SECRET, APP_ID)


def test_a_valid_token_names_the_member_and_is_cached(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    token = memberstack.mint("mem_alice")
    assert verifier.verify(token) == "mem_alice"
    assert verifier.verify(token) == "mem_alice"
    assert verifier.calls == 1


def test_a_token_of_another_app_is_refused(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    foreign = mint_token("mem_alice", app_id="app_someone_else", key=memberstack.standin.key)
    with pytest.raises(errors.Unauthenticated):
        verifier.verify(foreign)


@pytest.mark.parametrize(
    "token", ["", "garbage", "a.b", "x" * 5000, "eyJhbGciOiJub25lIn0.eyJpZCI6Im1lbSJ9."]
)
def test_malformed_tokens_are_refused(verifier: MemberstackVerifier, token: str) -> None:
    with pytest.raises(errors.Unauthenticated):
        verifier.verify(token)


def test_expired_and_revoked_tokens_are_refused(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    expired = mint_token(
        "mem_bob", app_id=APP_ID, key=memberstack.standin.key, ttl_seconds=60, issued_at=1_000_000
    )
    revoked = memberstack.mint("mem_bob")
    memberstack.revoke(revoked)
    for token in (expired, revoked):
        with pytest.raises(errors.Unauthenticated):
            verifier.verify(token)


def test_wrong_api_key_is_never_a_pass(memberstack: MemberstackServer) -> None:
    verifier = MemberstackVerifier(memberstack.url, "sk_sb_wrong", APP_ID)
    with pytest.raises(errors.Unauthenticated):
        verifier.verify(memberstack.mint("mem_alice"))


def test_memberstack_unreachable_is_503_not_a_pass(memberstack: MemberstackServer) -> None:
    verifier = MemberstackVerifier("http://127.0.0.1:9", SECRET, APP_ID)
    with pytest.raises(errors.UpstreamUnavailable):
        verifier.verify(memberstack.mint("mem_alice"))


@pytest.mark.unit
@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": ""}, {"authorization": "Basic abc"}, {"authorization": "Bearer  "}],
)
def test_requests_without_a_bearer_token_are_unauthenticated(headers: dict[str, str]) -> None:
    with pytest.raises(errors.Unauthenticated):
        bearer_token(headers)


def test_admins_come_from_the_configured_ids(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    headers = {"Authorization": f"Bearer {memberstack.mint('mem_admin')}"}
    member = authenticate(headers, verifier, ("mem_admin",))
    assert member == Member("mem_admin", is_admin=True)
    require_admin(member, "refund")
    with pytest.raises(errors.Forbidden):
        require_admin(Member("mem_x"), "refund")
