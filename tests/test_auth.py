"""Member authentication: real RS256 tokens from the Memberstack stand-in, verified against the
keys it publishes (JWKS), with its verify-token API as the fallback, over real HTTP."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from payments import errors
from payments.adapters import memberstack as ms
from payments.adapters.memberstack import MemberstackVerifier, jwks_url_for
from payments.auth import Member, authenticate, bearer_token, require_admin
from tools.local.memberstack import (
    MemberstackServer,
    generate_signing_key,
    mint_token,
    start_memberstack,
)

pytestmark = pytest.mark.integration

APP_ID = "app_test_payments"
SECRET = "sk_sb_test_secret"


@pytest.fixture
def memberstack() -> Iterator[MemberstackServer]:
    server = start_memberstack(0, secret_key=SECRET, app_id=APP_ID, key=generate_signing_key())
    yield server
    server.stop()


@pytest.fixture
def verifier(memberstack: MemberstackServer) -> MemberstackVerifier:
    return MemberstackVerifier(memberstack.url, SECRET, APP_ID)


def refused_with(verifier: MemberstackVerifier, token: str) -> str:
    with pytest.raises(errors.Unauthenticated) as raised:
        verifier.verify(token)
    return raised.value.message


def b64url(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_valid_token_is_verified_locally_against_the_published_keys_and_cached(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    # Given a member's token and a verifier that has not seen the keys yet
    token = memberstack.mint("mem_alice")

    # When it is verified twice, and another member's token once
    first, second = verifier.verify(token), verifier.verify(token)
    other = verifier.verify(memberstack.mint("mem_carol"))

    # Then it names the member, the keys were fetched once and Memberstack's API never called
    assert (first, second, other) == ("mem_alice", "mem_alice", "mem_carol")
    assert memberstack.standin.jwks_served == 1
    assert verifier.calls == 0
    assert verifier.local_verifications == 2


def test_a_rotated_key_is_fetched_when_a_token_names_it(memberstack: MemberstackServer) -> None:
    # Given a verifier that knows the current key, past its refresh cooldown
    verifier = MemberstackVerifier(memberstack.url, SECRET, APP_ID, jwks_refresh_cooldown=0)
    assert verifier.verify(memberstack.mint("mem_alice")) == "mem_alice"

    # When Memberstack rotates its signing key and a token signed with the new one arrives
    memberstack.standin.rotate()
    member = verifier.verify(memberstack.mint("mem_bob"))

    # Then the key set was fetched again and the token verified locally
    assert member == "mem_bob"
    assert memberstack.standin.jwks_served == 2
    assert verifier.calls == 0


def test_a_new_key_within_the_refresh_cooldown_is_accepted_through_verify_token(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    # Given keys fetched a moment ago
    assert verifier.verify(memberstack.mint("mem_alice")) == "mem_alice"

    # When a token signed by a key published since then arrives
    memberstack.standin.rotate()
    member = verifier.verify(memberstack.mint("mem_bob"))

    # Then Memberstack's API vouches for it, and the key set is not fetched again yet
    assert member == "mem_bob"
    assert (memberstack.standin.jwks_served, verifier.calls) == (1, 1)


def test_invented_key_ids_refresh_the_keys_at_most_once_per_cooldown(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    # Given tokens signed with keys Memberstack never published
    forged = [mint_token(f"mem_{n}", app_id=APP_ID, key=generate_signing_key()) for n in range(3)]

    # When each is presented
    messages = [refused_with(verifier, token) for token in forged]

    # Then each is refused by verify-token (the fallback), and the keys were fetched once
    assert set(messages) == {ms.REVOKED}
    assert memberstack.standin.jwks_served == 1
    assert verifier.calls == 3


def test_a_token_of_another_app_is_refused_saying_so(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    foreign = mint_token("mem_alice", app_id="app_someone_else", key=memberstack.standin.key)
    assert refused_with(verifier, foreign) == ms.OTHER_APP


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "x" * 5000,
        "a.b.c.d",
        "!!!.???.***",
        f"{b64url([1])}.{b64url({})}.c2ln",
        f"{b64url({'alg': 'RS256'})}.{b64url({'id': 'mem_1'})}.c2ln",
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.bm90IGpzb24.c2ln",
    ],
)
def test_malformed_tokens_are_refused_as_malformed_not_expired(
    verifier: MemberstackVerifier, token: str
) -> None:
    assert refused_with(verifier, token) == ms.MALFORMED
    assert verifier.calls == 0


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", None])
def test_tokens_not_signed_with_rs256_are_refused_without_asking_memberstack(
    memberstack: MemberstackServer, verifier: MemberstackVerifier, alg: str | None
) -> None:
    header = {"alg": alg, "kid": memberstack.standin.jwks()["keys"][0]["kid"]}
    claims = {"id": "mem_admin", "iss": ms.ISSUER, "aud": APP_ID, "exp": time.time() + 600}
    token = f"{b64url(header)}.{b64url(claims)}.c2lnbmF0dXJl"

    assert refused_with(verifier, token) == ms.NOT_VERIFIED
    assert verifier.calls == 0


def test_a_tampered_token_fails_its_signature(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    # Given a valid token whose claims are swapped for an administrator's
    header, _claims, signature = memberstack.mint("mem_alice").split(".")
    claims = {"id": "mem_admin", "type": "member", "iss": ms.ISSUER, "aud": APP_ID}
    tampered = f"{header}.{b64url({**claims, 'exp': int(time.time()) + 600})}.{signature}"

    # Then it is refused locally
    assert refused_with(verifier, tampered) == ms.NOT_VERIFIED
    assert verifier.calls == 0


def test_an_expired_token_says_the_session_expired(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    expired = mint_token(
        "mem_bob", app_id=APP_ID, key=memberstack.standin.key, ttl_seconds=60, issued_at=1_000_000
    )
    assert refused_with(verifier, expired) == ms.EXPIRED


def test_a_token_with_the_wrong_issuer_or_type_is_not_a_member_token(
    memberstack: MemberstackServer,
) -> None:
    import jwt

    key = memberstack.standin.key
    kid = memberstack.standin.jwks()["keys"][0]["kid"]
    base = {"id": "mem_1", "aud": APP_ID, "exp": int(time.time()) + 600}
    verifier = MemberstackVerifier(memberstack.url, SECRET, APP_ID)
    for claims in (
        {**base, "iss": "https://evil.example"},
        {**base, "iss": ms.ISSUER, "type": "x"},
    ):
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        assert refused_with(verifier, token) == ms.NOT_MEMBER


def test_without_the_published_keys_verify_token_is_the_fallback(
    memberstack: MemberstackServer,
) -> None:
    # Given a verifier whose key set cannot be fetched
    verifier = MemberstackVerifier(
        memberstack.url, SECRET, APP_ID, jwks_url=f"{memberstack.url}/no-such-keys"
    )
    valid, revoked = memberstack.mint("mem_alice"), memberstack.mint("mem_bob")
    memberstack.revoke(revoked)

    # Then Memberstack's API decides, revocations included
    assert verifier.verify(valid) == "mem_alice"
    assert refused_with(verifier, revoked) == ms.REVOKED
    assert verifier.calls == 2


def test_the_fallback_with_a_wrong_api_key_is_never_a_pass(memberstack: MemberstackServer) -> None:
    verifier = MemberstackVerifier(
        memberstack.url, "sk_sb_wrong", APP_ID, jwks_url="http://127.0.0.1:9/"
    )
    with pytest.raises(errors.Unauthenticated):
        verifier.verify(memberstack.mint("mem_alice"))


def test_memberstack_unreachable_is_503_not_a_pass(memberstack: MemberstackServer) -> None:
    verifier = MemberstackVerifier("http://127.0.0.1:9", SECRET, APP_ID)
    with pytest.raises(errors.UpstreamUnavailable):
        verifier.verify(memberstack.mint("mem_alice"))


def test_a_revoked_member_token_passes_until_it_expires_but_not_for_an_administrator(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    # Given a member's and an administrator's token, both revoked in Memberstack
    member_token, admin_token = memberstack.mint("mem_alice"), memberstack.mint("mem_admin")
    memberstack.revoke(member_token)
    memberstack.revoke(admin_token)

    # When each calls with it
    member = authenticate({"Authorization": f"Bearer {member_token}"}, verifier, ("mem_admin",))
    with pytest.raises(errors.Unauthenticated) as raised:
        authenticate({"Authorization": f"Bearer {admin_token}"}, verifier, ("mem_admin",))

    # Then the member's passes (the signature is still valid: the documented policy), the
    # administrator's is refused because Memberstack is asked, once
    assert member == Member("mem_alice")
    assert raised.value.message == ms.REVOKED
    assert verifier.calls == 1


def test_an_administrators_confirmation_is_cached_for_a_minute(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    headers = {"Authorization": f"Bearer {memberstack.mint('mem_admin')}"}

    members = [authenticate(headers, verifier, ("mem_admin",)) for _ in range(3)]

    assert members == [Member("mem_admin", is_admin=True)] * 3
    assert verifier.calls == 1


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


@pytest.mark.unit
def test_the_keys_are_memberstacks_for_its_api_and_a_stand_ins_otherwise() -> None:
    assert jwks_url_for("https://admin.memberstack.com") == ms.JWKS_URL
    assert jwks_url_for("http://127.0.0.1:12112/") == "http://127.0.0.1:12112/.well-known/jwks.json"
    assert jwks_url_for("https://admin.memberstack.com", "https://keys.example/") == (
        "https://keys.example/"
    )


# --- keys substituted on the way: the local check is not the last word --------------------


@pytest.fixture
def impostor() -> Iterator[MemberstackServer]:
    """Someone on the network path serving their own key set in place of Memberstack's."""
    server = start_memberstack(
        0, secret_key="sk_sb_other", app_id=APP_ID, key=generate_signing_key()
    )
    yield server
    server.stop()


def test_a_token_signed_with_substituted_keys_is_refused_where_memberstack_confirms(
    memberstack: MemberstackServer, impostor: MemberstackServer
) -> None:
    # Given a verifier whose key fetch was answered by the impostor's key set (plain HTTP)
    verifier = MemberstackVerifier(
        memberstack.url, SECRET, APP_ID, jwks_url=f"{impostor.url}/.well-known/jwks.json"
    )
    forged = {"Authorization": f"Bearer {impostor.mint('mem_victim')}"}

    # When the forged token for someone else's account is used
    read_only = authenticate(forged, verifier, ("mem_admin",))
    with pytest.raises(errors.Unauthenticated) as destructive:
        authenticate(forged, verifier, ("mem_admin",), confirm=True)

    # Then the local check alone is fooled (why it does not guard destructive actions), and
    # Memberstack's verify-token refuses it where it is asked
    assert read_only == Member("mem_victim")
    assert destructive.value.message == ms.REVOKED
    assert verifier.calls == 1


def test_a_confirmed_member_action_refuses_a_revoked_token_and_caches_a_good_one(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    good, revoked = memberstack.mint("mem_alice"), memberstack.mint("mem_bob")
    memberstack.revoke(revoked)

    members = [
        authenticate({"Authorization": f"Bearer {good}"}, verifier, (), confirm=True)
        for _ in range(3)
    ]
    with pytest.raises(errors.Unauthenticated):
        authenticate({"Authorization": f"Bearer {revoked}"}, verifier, (), confirm=True)

    # One verify-token call for the good token (then cached), one for the revoked one
    assert members == [Member("mem_alice")] * 3
    assert verifier.calls == 2


def test_a_bad_token_fails_the_local_check_before_memberstack_is_asked(
    memberstack: MemberstackServer, verifier: MemberstackVerifier
) -> None:
    header, claims, _signature = memberstack.mint("mem_alice").split(".")
    tampered = f"{header}.{claims}.{b64url('not a signature')}"

    with pytest.raises(errors.Unauthenticated) as raised:
        authenticate({"Authorization": f"Bearer {tampered}"}, verifier, (), confirm=True)

    assert raised.value.message == ms.NOT_VERIFIED
    assert verifier.calls == 0
