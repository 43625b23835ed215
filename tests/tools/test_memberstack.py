"""The Memberstack stand-in verifies real RS256 member tokens like the Admin REST API."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tools.conftest import APP_ID, SECRET_KEY
from tools.local import member_token
from tools.local.memberstack import (
    ISSUER,
    LOCAL_ADMIN_MEMBER_ID,
    MemberstackServer,
    generate_signing_key,
    load_or_create_signing_key,
    mint_token,
    start_memberstack,
)

pytestmark = pytest.mark.integration


def verify(
    server: MemberstackServer, token: str, api_key: str | None = SECRET_KEY
) -> httpx.Response:
    headers = {} if api_key is None else {"X-API-KEY": api_key}
    return httpx.post(f"{server.url}/members/verify-token", json={"token": token}, headers=headers)


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.json() == {"code": "INVALID_TOKEN", "message": "Invalid token"}


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_verify_token_returns_the_claims_of_a_minted_token(memberstack: MemberstackServer) -> None:
    # Given a token minted for a member
    before = int(time.time())
    token = memberstack.mint("mem_abc123", ttl_seconds=600)

    # When the service verifies it with the secret key
    response = verify(memberstack, token)

    # Then the stand-in answers with exactly the claims Memberstack returns
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == {"id", "type", "iat", "exp", "aud", "iss"}
    assert data["id"] == "mem_abc123"
    assert data["type"] == "member"
    assert data["aud"] == APP_ID
    assert data["iss"] == ISSUER
    assert before <= data["iat"] <= int(time.time())
    assert data["exp"] == data["iat"] + 600


def test_minted_token_is_an_rs256_jwt_with_member_claims(signing_key: rsa.RSAPrivateKey) -> None:
    # Given a token minted with an email
    token = mint_token("mem_1", app_id="app_x", email="a@example.com", key=signing_key)

    # When it is decoded with the public key
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, signing_key.public_key(), algorithms=["RS256"], audience="app_x")

    # Then it carries the Memberstack-shaped claims
    assert header["alg"] == "RS256"
    assert header["kid"]
    assert claims["id"] == claims["sub"] == "mem_1"
    assert claims["type"] == "member"
    assert claims["email"] == "a@example.com"
    assert claims["iss"] == ISSUER


def test_audience_is_returned_but_not_checked(memberstack: MemberstackServer) -> None:
    # Given a token for another Memberstack app, signed with the stand-in's key
    token = mint_token("mem_1", app_id="app_someone_else", key=memberstack.standin.key)

    # When it is verified
    response = verify(memberstack, token)

    # Then it is accepted and the caller sees the foreign audience (the service must reject it)
    assert response.status_code == 200
    assert response.json()["data"]["aud"] == "app_someone_else"


def test_expired_token_is_invalid(memberstack: MemberstackServer) -> None:
    # Given a token that expired a minute ago
    issued = int(time.time()) - 3660
    token = mint_token(
        "mem_1", app_id=APP_ID, ttl_seconds=3600, key=memberstack.standin.key, issued_at=issued
    )

    # When it is verified, then it is rejected
    assert_invalid_token(verify(memberstack, token))


def test_tampered_token_is_invalid(memberstack: MemberstackServer) -> None:
    # Given a valid token whose payload is swapped for another member, signature kept
    token = memberstack.mint("mem_victim")
    assert verify(memberstack, token).status_code == 200
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    forged_claims = claims | {"id": "mem_attacker", "sub": "mem_attacker"}
    forged = f"{header}.{b64url(forged_claims)}.{signature}"

    # When it is verified, then it is rejected
    assert_invalid_token(verify(memberstack, forged))


def test_unsigned_token_is_invalid(memberstack: MemberstackServer) -> None:
    # Given an "alg: none" token with otherwise valid claims
    claims = jwt.decode(memberstack.mint("mem_1"), options={"verify_signature": False})
    unsigned = f"{b64url({'alg': 'none', 'typ': 'JWT'})}.{b64url(claims)}."

    # When it is verified, then it is rejected
    assert_invalid_token(verify(memberstack, unsigned))


def test_token_signed_by_another_key_is_invalid(memberstack: MemberstackServer) -> None:
    # Given a well-formed token signed by a key the stand-in does not hold
    token = mint_token("mem_1", app_id=APP_ID, key=generate_signing_key())

    # When it is verified, then it is rejected
    assert_invalid_token(verify(memberstack, token))


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c"])
def test_malformed_token_is_invalid(memberstack: MemberstackServer, garbage: str) -> None:
    assert_invalid_token(verify(memberstack, garbage))


def test_revoked_token_becomes_invalid(memberstack: MemberstackServer) -> None:
    # Given a token that verifies
    token = memberstack.mint("mem_1")
    assert verify(memberstack, token).status_code == 200

    # When a test revokes it through the stand-in endpoint
    revoked = httpx.post(f"{memberstack.url}/_standin/revoke", json={"token": token})

    # Then later verifications fail, while other tokens of the member still work
    assert revoked.status_code == 200
    assert_invalid_token(verify(memberstack, token))
    assert verify(memberstack, memberstack.mint("mem_1", ttl_seconds=7200)).status_code == 200


def test_signing_keys_are_published_as_a_jwks_document(
    memberstack: MemberstackServer, signing_key: rsa.RSAPrivateKey
) -> None:
    # When the key set is fetched the way Memberstack's own package fetches it (no API key)
    response = httpx.get(f"{memberstack.url}/.well-known/jwks.json")

    # Then it lists the signing key's public half under the kid its tokens carry
    assert response.status_code == 200
    [jwk] = response.json()["keys"]
    assert set(jwk) == {"kty", "kid", "use", "alg", "n", "e"}
    assert (jwk["kty"], jwk["use"], jwk["alg"]) == ("RSA", "sig", "RS256")
    token = memberstack.mint("mem_1")
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    public = jwt.PyJWK(jwk).key
    assert jwt.decode(token, public, algorithms=["RS256"], audience=APP_ID)["id"] == "mem_1"
    assert "d" not in jwk  # never the private exponent


def test_a_rotation_publishes_the_new_key_beside_the_old_one(
    memberstack: MemberstackServer,
) -> None:
    # Given a token signed before the rotation
    before = memberstack.mint("mem_1")

    # When the stand-in rotates its key, then rotates again retiring the previous ones
    rotated = httpx.post(f"{memberstack.url}/_standin/rotate", json={})
    after = memberstack.mint("mem_2")
    kids = [k["kid"] for k in httpx.get(f"{memberstack.url}/.well-known/jwks.json").json()["keys"]]

    # Then both keys are published, new tokens carry the new kid, and both tokens verify
    assert rotated.status_code == 200
    assert kids[-1] == rotated.json()["kid"] == jwt.get_unverified_header(after)["kid"]
    assert len(kids) == 2
    assert verify(memberstack, before).status_code == 200
    assert verify(memberstack, after).status_code == 200

    httpx.post(f"{memberstack.url}/_standin/rotate", json={"retire_previous": True})
    assert len(httpx.get(f"{memberstack.url}/.well-known/jwks.json").json()["keys"]) == 1
    assert_invalid_token(verify(memberstack, before))


@pytest.mark.parametrize("api_key", [None, "", "sk_sb_wrong"], ids=["missing", "empty", "wrong"])
def test_wrong_or_missing_api_key_is_unauthorized(
    memberstack: MemberstackServer, api_key: str | None
) -> None:
    # Given a valid token, when it is verified without the right secret key
    response = verify(memberstack, memberstack.mint("mem_1"), api_key=api_key)

    # Then the request is refused before looking at the token
    assert response.status_code == 401
    assert response.json()["code"] != "INVALID_TOKEN"
    assert "data" not in response.json()


def test_verify_token_without_a_token_is_a_bad_request(memberstack: MemberstackServer) -> None:
    response = httpx.post(
        f"{memberstack.url}/members/verify-token",
        json={"jwt": "x"},
        headers={"X-API-KEY": SECRET_KEY},
    )
    assert response.status_code == 400


def test_mint_endpoint_returns_a_token_the_stand_in_accepts(memberstack: MemberstackServer) -> None:
    # Given a browser demo asking the stand-in for a token
    response = httpx.post(
        f"{memberstack.url}/_standin/tokens", json={"member_id": "mem_demo", "ttl_seconds": 60}
    )

    # When that token is verified, then it belongs to the requested member
    assert response.status_code == 201
    data = verify(memberstack, response.json()["token"]).json()["data"]
    assert data["id"] == "mem_demo"
    assert data["exp"] - data["iat"] == 60


def test_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    # Given no key file yet
    path = tmp_path / "memberstack" / "key.pem"

    # When the key is loaded twice
    first = load_or_create_signing_key(path)
    second = load_or_create_signing_key(path)

    # Then the file was created readable by its owner only, and both loads give the same key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = mint_token("mem_1", app_id=APP_ID, key=first)
    assert jwt.decode(token, second.public_key(), algorithms=["RS256"], audience=APP_ID)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_cli_token_verifies_against_a_server_sharing_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stand-in running on a key file, and the CLI pointed at the same file
    key_file = tmp_path / "key.pem"
    monkeypatch.setenv("MEMBERSTACK_STANDIN_KEY_FILE", str(key_file))
    monkeypatch.setenv("MEMBERSTACK_APP_ID", APP_ID)
    server = start_memberstack(secret_key=SECRET_KEY, key_path=key_file)
    try:
        # When the CLI prints a token
        assert member_token.main(["mem_cli", "--ttl", "120"]) == 0
        token = capsys.readouterr().out.strip()

        # Then the running server accepts it
        response = verify(server, token)
    finally:
        server.stop()
    assert response.status_code == 200
    assert response.json()["data"]["id"] == "mem_cli"
    assert response.json()["data"]["aud"] == APP_ID


def test_cli_admin_flag_defaults_to_the_local_admin_and_reminds_about_admin_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEMBERSTACK_STANDIN_KEY_FILE", str(tmp_path / "key.pem"))
    monkeypatch.delenv("ADMIN_MEMBER_IDS", raising=False)

    assert member_token.main(["--admin"]) == 0

    out, err = capsys.readouterr()
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["id"] == LOCAL_ADMIN_MEMBER_ID
    assert "ADMIN_MEMBER_IDS" in err
    assert out.count("\n") == 1  # stdout holds the token only


def test_cli_requires_a_member_id_without_admin_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        member_token.main([])
    assert exit_info.value.code == 2
    assert "member_id is required" in capsys.readouterr().err
