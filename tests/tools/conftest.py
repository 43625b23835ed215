"""Fixtures for the local stand-ins: each test gets its own server on a free port."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tools.local.make_receiver import MakeReceiverServer, start_make_receiver
from tools.local.memberstack import MemberstackServer, generate_signing_key, start_memberstack
from tools.local.sqs import LocalSqs, create_queues, start_sqs

SECRET_KEY = "sk_sb_test_secret"
APP_ID = "app_test_payments"
MAKE_KEY = "make_test_key"


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    # RSA generation costs tens of milliseconds; one key for the whole run is enough.
    return generate_signing_key()


@pytest.fixture
def memberstack(signing_key: rsa.RSAPrivateKey) -> Iterator[MemberstackServer]:
    server = start_memberstack(secret_key=SECRET_KEY, app_id=APP_ID, key=signing_key)
    yield server
    server.stop()


@pytest.fixture
def make_receiver() -> Iterator[MakeReceiverServer]:
    server = start_make_receiver(api_key=MAKE_KEY)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local_sqs() -> Iterator[LocalSqs]:
    local = start_sqs()
    yield local
    local.stop()


QueueFactory = Callable[..., tuple[str, str]]


@pytest.fixture
def make_queues(local_sqs: LocalSqs) -> QueueFactory:
    """Create a fresh queue pair; moto's state is per process, so names must be unique."""

    def _make(visibility_timeout: int = 30) -> tuple[str, str]:
        return create_queues(
            local_sqs.endpoint_url,
            f"test-{uuid.uuid4().hex[:12]}",
            visibility_timeout=visibility_timeout,
        )

    return _make
