"""The stdlib RS256 verifier gives PyJWT's (with ``cryptography``) verdict on every token."""

from __future__ import annotations

import base64

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.rs256 import (
    MalformedToken,
    RsaPublicKey,
    key_from_jwk,
    split_token,
    verify_rs256,
)
from tools.local.memberstack import public_jwk

pytestmark = pytest.mark.unit

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC = key_from_jwk(public_jwk(KEY))


def ours(token: str) -> bool:
    assert PUBLIC is not None
    try:
        parts = split_token(token)
    except MalformedToken:
        return False
    return parts.header.get("alg") == "RS256" and verify_rs256(
        parts.signing_input, parts.signature, PUBLIC
    )


def pyjwt(token: str) -> bool:
    try:
        jwt.decode(
            token,
            KEY.public_key(),
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError:
        return False
    return True


def flip(token: str, position: int, char: str) -> str:
    index = position % len(token)
    return token[:index] + char + token[index + 1 :]


claims = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20), "exp": st.integers(0, 2**31)},
    optional={"aud": st.text(max_size=10), "nested": st.lists(st.integers(), max_size=3)},
)


@settings(max_examples=60, deadline=None)
@given(
    payload=claims,
    signer=st.sampled_from(["ours", "other"]),
    mutation=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 2000), st.sampled_from(list("Aa0_-.=/+ "))),
    ),
)
def test_every_token_gets_pyjwts_verdict(
    payload: dict[str, object], signer: str, mutation: tuple[int, str] | None
) -> None:
    token = jwt.encode(payload, KEY if signer == "ours" else OTHER, algorithm="RS256")
    if mutation is not None:
        token = flip(token, *mutation)
    assert ours(token) == pyjwt(token)


def test_a_valid_token_verifies_and_one_signed_by_another_key_does_not() -> None:
    assert ours(jwt.encode({"id": "mem_1"}, KEY, algorithm="RS256"))
    assert not ours(jwt.encode({"id": "mem_1"}, OTHER, algorithm="RS256"))


def test_a_signature_of_the_wrong_length_or_out_of_range_is_refused() -> None:
    assert PUBLIC is not None
    token = jwt.encode({"id": "mem_1"}, KEY, algorithm="RS256")
    parts = split_token(token)
    assert not verify_rs256(parts.signing_input, parts.signature[:-1], PUBLIC)
    too_big = PUBLIC.n.to_bytes(PUBLIC.size_bytes, "big")
    assert not verify_rs256(parts.signing_input, too_big, PUBLIC)


def test_only_rsa_signing_keys_of_a_safe_size_are_taken_from_a_key_set() -> None:
    good = public_jwk(KEY)
    # A breakable key on purpose: the key set must refuse it.
    small_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    assert key_from_jwk(good) == PUBLIC
    for jwk in (
        {**good, "kty": "EC"},
        {**good, "alg": "HS256"},
        {**good, "use": "enc"},
        {key: value for key, value in good.items() if key != "n"},
        {**good, "n": "!!"},
        public_jwk(small_key),
        {**good, "e": base64.urlsafe_b64encode(b"\x02").decode().rstrip("=")},
    ):
        assert key_from_jwk(jwk) is None, jwk


def test_the_parts_of_a_malformed_token_are_refused() -> None:
    for token in ("", "a", "a.b", "a.b.c.d", "e30.e30.", "W10.e30.c2ln", "e30.bm90.c2ln"):
        with pytest.raises(MalformedToken):
            split_token(token)
    assert isinstance(PUBLIC, RsaPublicKey)
