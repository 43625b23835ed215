"""Form decoding and parameter validation, without HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stripe import params as sp
from stripe._encode import _api_encode
from stripe.params import checkout as sp_checkout

from tools.stripe_emulator.errors import StripeError
from tools.stripe_emulator.forms import decode, normalize
from tools.stripe_emulator.validation import validate

pytestmark = pytest.mark.unit


def test_nested_keys_decode_into_dicts_and_lists() -> None:
    # Given a body shaped like stripe-python's checkout session request
    body = (
        "line_items[0][price]=price_1&line_items[0][quantity]=2&line_items[1][price]=price_2"
        "&metadata[order]=42&expand[]=line_items&expand[]=payment_intent&mode=payment"
    )

    # When it is decoded and normalised
    decoded = normalize(decode(body))

    # Then the brackets become nested dicts and lists, in order
    assert decoded == {
        "line_items": [{"price": "price_1", "quantity": "2"}, {"price": "price_2"}],
        "metadata": {"order": "42"},
        "expand": ["line_items", "payment_intent"],
        "mode": "payment",
    }


def test_numeric_metadata_keys_stay_keys_when_the_schema_says_hash() -> None:
    # Given metadata whose key looks like a list index
    decoded = decode("metadata[0]=zero&amount=5")

    # When it is validated as refund parameters
    checked = validate(decoded, sp.RefundCreateParams)

    # Then metadata stays a dict and the amount is an integer
    assert checked == {"metadata": {"0": "zero"}, "amount": 5}


def test_a_key_used_as_value_and_hash_is_rejected() -> None:
    with pytest.raises(StripeError) as error:
        decode("metadata=x&metadata[a]=b")
    assert error.value.status == 400


_scalars = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8
)
_keys = st.from_regex(r"[a-z][a-z_]{0,6}", fullmatch=True)
_values: Any = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(_keys, inner, min_size=1, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(_keys, _values, min_size=1, max_size=4))
def test_whatever_stripe_python_encodes_decodes_back_unchanged(params: dict[str, Any]) -> None:
    # Given any nested parameters encoded exactly as the stripe client encodes them
    body = urlencode(list(_api_encode(params)))

    # When the emulator decodes them
    decoded = normalize(decode(body))

    # Then it gets the same structure back
    assert decoded == params


def test_unknown_nested_parameter_is_named_like_stripe_does() -> None:
    with pytest.raises(StripeError) as error:
        validate(decode("mode=payment&line_items[0][pricee]=p"), sp_checkout.SessionCreateParams)
    assert error.value.code == "parameter_unknown"
    assert error.value.param == "line_items[0][pricee]"
    assert error.value.message == "Received unknown parameter: line_items[0][pricee]"


@pytest.mark.parametrize(
    ("body", "schema", "code", "param"),
    [
        ("amount=ten", sp.RefundCreateParams, "parameter_invalid_integer", "amount"),
        ("amount=", sp.RefundCreateParams, "parameter_invalid_empty", "amount"),
        ("cancel_at_period_end=yes", sp.SubscriptionUpdateParams, None, "cancel_at_period_end"),
        ("origin=bank", sp.RefundCreateParams, None, "origin"),
        ("description=x", sp.ProductCreateParams, "parameter_missing", "name"),
        ("api_key=sk_test_x", sp.CustomerCreateParams, "parameter_unknown", "api_key"),
    ],
)
def test_mistyped_parameters_are_rejected(
    body: str, schema: type, code: str | None, param: str
) -> None:
    with pytest.raises(StripeError) as error:
        validate(decode(body), schema)
    assert (error.value.status, error.value.code, error.value.param) == (400, code, param)


def test_values_are_coerced_to_their_declared_types() -> None:
    checked = validate(
        decode(
            "items[0][id]=si_1&items[0][price]=price_2&proration_date=1700000000"
            "&cancel_at_period_end=true&pause_collection="
        ),
        sp.SubscriptionUpdateParams,
    )
    assert checked == {
        "items": [{"id": "si_1", "price": "price_2"}],
        "proration_date": 1700000000,
        "cancel_at_period_end": True,
        "pause_collection": "",
    }
