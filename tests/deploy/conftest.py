"""A deployment's outside services, on loopback: the Stripe emulator (catalog seeded, webhook
endpoint registered), the Memberstack stand-in, the Make.com receiver, a PostgREST stand-in
over a database of this module's own, and moto (CloudFormation, Lambda, SNS, Secrets Manager,
SSM) in server mode for AWS."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer
from psycopg import sql

from payments.adapters import secrets
from tests.conftest import _server_url, _with_database
from tests.fakes.postgrest import PostgrestOverPostgres
from tools.db import apply_migrations
from tools.local.make_receiver import MakeReceiverServer, start_make_receiver
from tools.local.memberstack import MemberstackServer, generate_signing_key, start_memberstack
from tools.seed_stripe import ensure_webhook_endpoint, seed_account
from tools.stripe_emulator import start_emulator
from tools.stripe_emulator.server import EmulatorHandle

STRIPE_KEY = "sk_test_deploy_0123456789"
JWT_SECRET = "deploy-test-jwt-secret-at-least-32-characters"
SUPABASE_URL = "https://project.supabase.test"
MEMBERSTACK_KEY = "sk_sb_deploy_secret"
APP_ID = "app_deploy_payments"
MAKE_KEY = "make_deploy_key"
API_URL = "https://abc123.execute-api.us-east-1.amazonaws.com"
SENTRY_DSN = "https://0123456789abcdef0123456789abcdef@o12345.ingest.sentry.io/4505"
REGION = "us-east-1"


def service_role_key(secret: str = JWT_SECRET) -> str:
    """Supabase's service key is a JWT naming the service_role, signed with the JWT secret."""
    return jwt.encode({"role": "service_role", "iss": "supabase"}, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def supabase_db(worker_id: str) -> Iterator[str]:
    """A migrated database the tests may break (RLS off, a function dropped) and repair."""
    server = _server_url()
    name = f"payments_deploy_{worker_id}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = _with_database(server, name)
    apply_migrations(url)
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def stripe_emulator() -> Iterator[EmulatorHandle]:
    handle = start_emulator(port=0, api_key=STRIPE_KEY, auto_deliver=False)
    yield handle
    handle.stop()


@pytest.fixture
def seeded_stripe(stripe_emulator: EmulatorHandle) -> EmulatorHandle:
    """An account set up the documented way: catalog prices, the portal configuration and the
    webhook endpoint."""
    stripe_emulator.reset()
    seed_account(STRIPE_KEY, stripe_emulator.base_url, quiet=True)
    ensure_webhook_endpoint(STRIPE_KEY, f"{API_URL}/v1/webhooks/stripe", stripe_emulator.base_url)
    return stripe_emulator


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return generate_signing_key()


@pytest.fixture(scope="module")
def memberstack(signing_key: rsa.RSAPrivateKey) -> Iterator[MemberstackServer]:
    server = start_memberstack(0, secret_key=MEMBERSTACK_KEY, app_id=APP_ID, key=signing_key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def make_receiver() -> Iterator[MakeReceiverServer]:
    server = start_make_receiver(0, api_key=MAKE_KEY, echo=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """boto3 clients on moto; the functions' own secret reader goes there too."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    secrets.use_fetcher()
    yield lambda service: boto3.client(service, region_name=REGION)  # type: ignore[call-overload]
    secrets.use_fetcher()


@pytest.fixture
def alarm_topic(aws: Callable[[str], Any]) -> str:
    """A topic with a confirmed subscription (moto confirms e-mail at once)."""
    sns = aws("sns")
    topic = sns.create_topic(Name=f"payments-alarms-{os.urandom(4).hex()}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="owner@business.example")
    return str(topic)


@dataclass
class Deployment:
    """A healthy deployment's configuration, and the services behind it."""

    values: dict[str, str]
    http: httpx.Client
    database_url: str
    stripe: EmulatorHandle
    memberstack: MemberstackServer
    make: MakeReceiverServer
    aws: Callable[[str], Any]
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture
def deployment(
    supabase_db: str,
    seeded_stripe: EmulatorHandle,
    memberstack: MemberstackServer,
    make_receiver: MakeReceiverServer,
    aws: Callable[[str], Any],
    alarm_topic: str,
) -> Iterator[Deployment]:
    values = {
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_API_BASE": seeded_stripe.base_url,
        "SUPABASE_URL": SUPABASE_URL,
        "SUPABASE_SERVICE_ROLE_KEY": service_role_key(),
        "SUPABASE_JWT_SECRET": JWT_SECRET,
        "MEMBERSTACK_SECRET_KEY": MEMBERSTACK_KEY,
        "MEMBERSTACK_APP_ID": APP_ID,
        "MEMBERSTACK_API_BASE": memberstack.url,
        "MAKE_WEBHOOK_URL": f"{make_receiver.url}/hook/add-project",
        "MAKE_API_KEY": MAKE_KEY,
        "SENTRY_DSN": SENTRY_DSN,
        "API_URL": API_URL,
        "ALARM_TOPIC_ARN": alarm_topic,
    }
    # Supabase's host is answered by the PostgREST stand-in; everything else is loopback.
    transport = PostgrestOverPostgres(supabase_db, JWT_SECRET)
    with httpx.Client(mounts={SUPABASE_URL: transport}, timeout=10) as http:
        yield Deployment(values, http, supabase_db, seeded_stripe, memberstack, make_receiver, aws)
