"""RS256 JSON Web Tokens verified with the standard library.

Member tokens are RS256 JWTs (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3). Verifying one
needs a public key and one modular exponentiation; the ``cryptography`` package PyJWT would
need for it is left out of the Lambda layer (it is most of supabase's size) and costs tens of
milliseconds to import. Verification handles only public data, so there is no secret to leak
through timing; the padding is checked the safe way, by building the one valid encoded message
(RFC 8017 §8.2.2, EMSA-PKCS1-v1_5) and comparing it whole, never by parsing the decrypted block.
``tests/test_rs256.py`` checks the verdicts against PyJWT with ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# DER of DigestInfo{sha256, NULL}, the prefix of the hash in EMSA-PKCS1-v1_5 (RFC 8017 §9.2).
_SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
MIN_KEY_BITS = 2048
MAX_KEY_BITS = 8192


class MalformedToken(ValueError):
    """Not a JWT at all: wrong shape, bad base64 or JSON."""


@dataclass(frozen=True)
class RsaPublicKey:
    n: int
    e: int

    @property
    def size_bytes(self) -> int:
        return (self.n.bit_length() + 7) // 8


@dataclass(frozen=True)
class UnverifiedToken:
    """A token split into its parts; nothing in it is trusted until ``verify`` says so."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_decode(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise MalformedToken("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("not base64url") from exc


_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedToken("not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedToken("not a JSON object")
    return value


def split_token(token: str) -> UnverifiedToken:
    """The parts of a compact JWS, or ``MalformedToken``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedToken("a JWT has three parts")
    header_b64, claims_b64, signature_b64 = parts
    return UnverifiedToken(
        header=_json_object(b64url_decode(header_b64)),
        claims=_json_object(b64url_decode(claims_b64)),
        signing_input=f"{header_b64}.{claims_b64}".encode("ascii"),
        signature=b64url_decode(signature_b64),
    )


def key_from_jwk(jwk: Mapping[str, Any]) -> RsaPublicKey | None:
    """The RSA signing key a JWK describes, or None for anything we must not verify with."""
    if jwk.get("kty") != "RSA" or jwk.get("alg", "RS256") != "RS256":
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        n = int.from_bytes(b64url_decode(str(jwk["n"])), "big")
        e = int.from_bytes(b64url_decode(str(jwk["e"])), "big")
    except (KeyError, MalformedToken):
        return None
    if not MIN_KEY_BITS <= n.bit_length() <= MAX_KEY_BITS or e < 3 or e % 2 == 0:
        return None
    return RsaPublicKey(n=n, e=e)


def verify_rs256(signing_input: bytes, signature: bytes, key: RsaPublicKey) -> bool:
    """Whether ``signature`` is ``key``'s RSASSA-PKCS1-v1_5 SHA-256 signature of the input."""
    k = key.size_bytes
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= key.n:
        return False
    encoded = pow(s, key.e, key.n).to_bytes(k, "big")
    digest_info = _SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
    padding = k - len(digest_info) - 3
    if padding < 8:
        return False
    expected = b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info
    return hmac.compare_digest(encoded, expected)
