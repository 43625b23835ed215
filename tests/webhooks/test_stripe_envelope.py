"""The webhook's envelope check accepts and refuses exactly what the worker's parser does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from payments.stripe_envelope import MalformedEnvelope, check_envelope
from payments.webhooks import MalformedEvent, parse_event

pytestmark = pytest.mark.unit


def verdict_of_worker(body: str) -> tuple[str, str] | str:
    try:
        event = parse_event(body)
    except MalformedEvent as exc:
        return f"{exc.code}: {exc.message}"
    return event.id, event.type


def verdict_of_webhook(body: str) -> tuple[str, str] | str:
    try:
        envelope = check_envelope(body)
    except MalformedEnvelope as exc:
        return f"{exc.code}: {exc.message}"
    return envelope.id, envelope.type


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=2_000_000_000),
    st.sampled_from(["", "evt_", "evt_123", "event", "charge.refunded", "x"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["id", "object"]), st.text(max_size=5), max_size=2),
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "object": st.one_of(st.just("event"), scalars),
        "id": st.one_of(st.from_regex(r"\Aevt_[A-Za-z0-9]{0,8}\Z"), scalars),
        "type": st.one_of(st.just("checkout.session.completed"), scalars),
        "created": st.one_of(st.integers(min_value=-1, max_value=2_000_000_000), scalars),
        "data": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "object": st.one_of(st.just({"id": "cs_1"}), scalars),
                    "previous_attributes": scalars,
                },
            ),
            scalars,
        ),
    },
)


@settings(max_examples=400, deadline=None)
@given(envelope=st.one_of(envelopes, scalars))
def test_every_decoded_payload_gets_the_same_verdict(envelope: Any) -> None:
    body = json.dumps(envelope)
    assert verdict_of_webhook(body) == verdict_of_worker(body)


@pytest.mark.parametrize(
    "body",
    ["", "not json", "[" * 100_000, '{"object": "event"', b"\xff\xfe".decode("latin-1")],
)
def test_bodies_that_do_not_decode_get_the_same_verdict(body: str) -> None:
    assert verdict_of_webhook(body) == verdict_of_worker(body)


def test_a_well_formed_event_gives_its_id_and_type() -> None:
    body = json.dumps(
        {
            "object": "event",
            "id": "evt_1",
            "type": "charge.refunded",
            "created": 1,
            "data": {"object": {}},
        }
    )
    assert verdict_of_webhook(body) == ("evt_1", "charge.refunded") == verdict_of_worker(body)
