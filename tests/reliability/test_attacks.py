"""The attack matrix (``tools.reliability.attacks``): every hostile request gets its status and
the contract's error JSON, and changes nothing (no row, no queued event, no Stripe call)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from payments.adapters.queue import get_event_queue, sqs_client
from tests.stack import ADMIN_ID, WEBHOOK_SECRET, Stack
from tools.local.memberstack import MemberstackServer, generate_signing_key, mint_token
from tools.local.sqs import start_sqs
from tools.reliability.attacks import (
    ATTACKS,
    AttackContext,
    prepare_victim,
    run_attack,
    side_effects,
)
from tools.reliability.chaos import ChaosEnv

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(service_env: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    """A moto queue (served over HTTP) the webhook function writes to."""
    get_event_queue.cache_clear()
    with start_sqs() as local:
        service_env.setenv("AWS_ENDPOINT_URL", local.endpoint_url)
        client = sqs_client(local.endpoint_url)
        url = client.create_queue(QueueName=f"attacks-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        service_env.setenv("WEBHOOK_QUEUE_URL", url)
        yield client, url
    get_event_queue.cache_clear()


def bad_tokens(memberstack: MemberstackServer, member: str) -> dict[str, str]:
    standin = memberstack.standin
    # Its own lifetime: a token minted in the same second with the same claims is the same
    # token, and the revocation would hit the valid one too. An administrator's: member tokens
    # are verified locally and pass until they expire (docs/performance.md, revocation).
    revoked = memberstack.mint(ADMIN_ID, ttl_seconds=1234)
    memberstack.revoke(revoked)
    return {
        "expired": memberstack.mint(member, ttl_seconds=-60),
        "wrong_audience": mint_token(member, app_id="app_someone_else", key=standin.key),
        "other_app": mint_token(member, app_id=standin.app_id, key=generate_signing_key()),
        "revoked": revoked,
    }


@pytest.fixture
def attack_context(
    chaos_env: ChaosEnv, stack: Stack, memberstack: MemberstackServer, queue: tuple[Any, str]
) -> AttackContext:
    client, url = queue

    def queued() -> int:
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    attacker = f"mem_attacker_{uuid.uuid4().hex[:8]}"
    return AttackContext(
        webhook_secret=WEBHOOK_SECRET,
        member_token=stack.token,
        bad_tokens=bad_tokens(memberstack, attacker),
        admin_token=stack.token(ADMIN_ID),
        attacker=attacker,
        victim=prepare_victim(chaos_env),
        side_effects=side_effects(chaos_env.database_url, chaos_env.stripe_base, queued),
    )


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_a_hostile_request_is_refused_and_changes_nothing(
    attack_context: AttackContext, attack: Any
) -> None:
    # Given another member's paid purchase and subscription, and the attacker's request
    # When it reaches the handler
    outcome = run_attack(attack, attack_context)

    # Then it gets the expected status and error body, and nothing was written or sent
    assert outcome.problems == [], f"{attack.name}: {outcome.body}"


def test_the_matrix_covers_every_group_of_the_issue() -> None:
    # Given the attack table / When grouped / Then every kind of attack asked for is there
    groups = {a.group for a in ATTACKS}
    assert groups == {"signature", "token", "authz", "cors", "size", "sql"}
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)
