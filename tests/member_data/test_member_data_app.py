"""The member-data function over real HTTP (the local API server runs the real handler), with
real Memberstack tokens verified over HTTP by the stand-in from tools/local."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from functions.member_data import app as member_data_app
from tests.conftest import event_file
from tests.fakes.lambda_context import FakeLambdaContext
from tests.member_data.rows import Rows
from tools.devserver.routes import http_routes
from tools.devserver.server import ApiServer
from tools.local.memberstack import MemberstackServer, generate_signing_key, start_memberstack

pytestmark = pytest.mark.integration

ADMIN = "mem_admin_1"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


@pytest.fixture
def memberstack(signing_key: rsa.RSAPrivateKey) -> Iterator[MemberstackServer]:
    server = start_memberstack(secret_key="sk_test_ms", app_id="app_test", key=signing_key)
    yield server
    server.stop()


@pytest.fixture
def api(env: pytest.MonkeyPatch, db: str, memberstack: MemberstackServer) -> Iterator[httpx.Client]:
    env.setenv("DATABASE_URL", db)
    env.setenv("MEMBERSTACK_API_BASE", memberstack.url)
    env.setenv("MEMBERSTACK_SECRET_KEY", memberstack.secret_key)
    env.setenv("MEMBERSTACK_APP_ID", memberstack.app_id)
    env.setenv("ADMIN_MEMBER_IDS", ADMIN)
    routes = [r for r in http_routes() if r.function == "MemberDataFunction"]
    server = ApiServer(("127.0.0.1", 0), routes=routes, static_root=None)
    server.start_in_thread()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client
    server.shutdown()
    server.server_close()


def bearer(memberstack: MemberstackServer, member_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {memberstack.mint(member_id)}"}


ROUTES = [
    ("GET", "/v1/me/payments"),
    ("GET", "/v1/me/data"),
    ("DELETE", "/v1/me/data"),
    ("GET", "/v1/admin/analytics?from=2026-01-01&to=2026-01-31"),
    ("DELETE", "/v1/admin/members/mem_a/data"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_token(api: httpx.Client, method: str, path: str) -> None:
    response = api.request(method, path)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_token_signed_by_someone_else_is_refused(
    api: httpx.Client, method: str, path: str
) -> None:
    forged = start_memberstack(secret_key="x", app_id="app_test", key=generate_signing_key())
    try:
        token = forged.mint("mem_a")
    finally:
        forged.stop()
    response = api.request(method, path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path"), ROUTES[3:])
def test_admin_routes_refuse_a_member_who_is_not_an_admin(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows, method: str, path: str
) -> None:
    rows.member("mem_a", "a")
    response = api.request(method, path, headers=bearer(memberstack, "mem_b"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "admin_only"
    assert rows.count("customers", "member_id = 'mem_a'") == 1


def test_memberstack_down_is_a_503(api: httpx.Client, memberstack: MemberstackServer) -> None:
    token = memberstack.mint("mem_a")
    memberstack.stop()
    response = api.get("/v1/me/payments", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "auth_unavailable"


def test_a_member_pages_through_their_own_payments(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows
) -> None:
    # Given three payments of A and one of B
    for amount in (9900, 4900, 7900):
        rows.log("mem_a", amount=amount)
    rows.log("mem_b", amount=100)
    headers = bearer(memberstack, "mem_a")
    # When A asks for two per page and follows the cursor
    first = api.get("/v1/me/payments", params={"limit": 2}, headers=headers)
    cursor = first.json()["next_cursor"]
    second = api.get("/v1/me/payments", params={"limit": 2, "cursor": cursor}, headers=headers)
    # Then A sees only their payments, newest first, with display amounts, never cached
    assert first.status_code == second.status_code == 200
    assert [p["display_amount"] for p in first.json()["payments"]] == ["$79", "$49"]
    assert [p["amount"] for p in second.json()["payments"]] == [9900]
    assert second.json()["next_cursor"] is None
    assert first.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 51}, {"cursor": "not-ours"}])
def test_a_bad_page_request_is_a_400(
    api: httpx.Client, memberstack: MemberstackServer, query: dict[str, object]
) -> None:
    response = api.get("/v1/me/payments", params=query, headers=bearer(memberstack, "mem_a"))
    assert response.status_code == 400


def test_a_member_exports_then_erases_their_data(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows
) -> None:
    rows.member("mem_a", "a")
    headers = bearer(memberstack, "mem_a")
    exported = api.get("/v1/me/data", headers=headers).json()
    assert [p["checkout_session_id"] for p in exported["purchases"]] == ["cs_a"]
    erased = api.delete("/v1/me/data", headers=headers)
    assert erased.status_code == 200
    assert erased.json()["pseudonym"].startswith("erased:")
    after = api.get("/v1/me/data", headers=headers).json()
    assert after["customer"] is None
    assert after["payment_logs"] == after["purchases"] == after["refunds"] == []


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/me/data"), ("DELETE", "/v1/me/data")])
def test_export_and_erasure_are_refused_to_a_revoked_token_the_local_check_accepts(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows, method: str, path: str
) -> None:
    # Given a member whose session was revoked in Memberstack (the token's signature is fine)
    rows.member("mem_a", "a")
    headers = bearer(memberstack, "mem_a")
    memberstack.revoke(headers["Authorization"].removeprefix("Bearer "))

    # When they read their payments, and export or erase their data
    payments = api.get("/v1/me/payments", headers=headers)
    response = api.request(method, path, headers=headers)

    # Then the read passes the local check, but export and erasure ask Memberstack, which says
    # no, and nothing is erased
    assert payments.status_code == 200
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert rows.count("customers", "member_id = 'mem_a'") == 1


def test_with_substituted_signing_keys_a_forged_token_cannot_erase_anyone(
    api: httpx.Client, env: pytest.MonkeyPatch, rows: Rows
) -> None:
    # Given keys fetched from someone on the network path instead of Memberstack
    impostor = start_memberstack(secret_key="x", app_id="app_test", key=generate_signing_key())
    try:
        env.setenv("MEMBERSTACK_JWKS_URL", f"{impostor.url}/.well-known/jwks.json")
        rows.member("mem_a", "a")
        forged = {"Authorization": f"Bearer {impostor.mint('mem_a')}"}

        # When the forged token of A asks to erase A's data
        erased = api.delete("/v1/me/data", headers=forged)
    finally:
        impostor.stop()

    # Then Memberstack's own verify-token refuses it: A's data is still there
    assert erased.status_code == 401
    assert rows.count("customers", "member_id = 'mem_a'") == 1


def test_erasure_with_a_live_subscription_is_a_409(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows
) -> None:
    rows.subscription("sub_live", "mem_a", status="active")
    response = api.delete("/v1/me/data", headers=bearer(memberstack, "mem_a"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "subscription_active"


def test_an_admin_erases_a_member(
    api: httpx.Client, memberstack: MemberstackServer, rows: Rows
) -> None:
    rows.member("mem_a", "a")
    response = api.delete("/v1/admin/members/mem_a/data", headers=bearer(memberstack, ADMIN))
    assert response.status_code == 200
    assert response.json()["rows"]["customers"] == 1
    assert rows.count("customers", "member_id = 'mem_a'") == 0


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=2026-01-01&to=2026-12-31", 200),
        ("from=2026-02-01&to=2026-01-01", 422),
        ("from=2024-01-01&to=2026-06-01", 422),
        ("from=yesterday&to=2026-01-01", 400),
        ("from=2026-01-01", 400),
    ],
)
def test_admin_analytics_validates_the_range(
    api: httpx.Client, memberstack: MemberstackServer, query: str, status: int
) -> None:
    response = api.get(f"/v1/admin/analytics?{query}", headers=bearer(memberstack, ADMIN))
    assert response.status_code == status
    if status == 200:
        body = response.json()
        assert (body["from"], body["to"]) == ("2026-01-01", "2026-12-31")
        assert body["monthly"] == []


def test_the_sample_event_reaches_the_route_and_is_refused_without_a_real_token(
    env: pytest.MonkeyPatch, db: str, memberstack: MemberstackServer
) -> None:
    env.setenv("DATABASE_URL", db)
    env.setenv("MEMBERSTACK_API_BASE", memberstack.url)
    env.setenv("MEMBERSTACK_SECRET_KEY", memberstack.secret_key)
    env.setenv("MEMBERSTACK_APP_ID", memberstack.app_id)
    event = json.loads(event_file("member_data").read_text())
    response = member_data_app.lambda_handler(event, FakeLambdaContext("MemberDataFunction"))
    assert response["statusCode"] == 401
