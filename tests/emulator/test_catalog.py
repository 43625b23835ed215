"""Products, prices, customers, authentication and Stripe-shaped errors."""

from __future__ import annotations

import httpx
import pytest
import stripe

from tests.emulator.conftest import API_KEY, monthly_price, one_time_price
from tools.stripe_emulator import EmulatorHandle, start_emulator

pytestmark = pytest.mark.integration


def test_price_is_created_retrieved_and_listed_by_lookup_key_with_product_expanded(
    client: stripe.StripeClient,
) -> None:
    # Given a product with a monthly price carrying a lookup key
    product = client.v1.products.create(params={"name": "Team plan", "metadata": {"tier": "2"}})
    price = client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 4900,
            "recurring": {"interval": "month", "interval_count": 1},
            "lookup_key": "team_monthly",
        }
    )

    # When prices are listed by lookup key with the product expanded
    listed = client.v1.prices.list(
        params={"lookup_keys": ["team_monthly"], "expand": ["data.product"]}
    )

    # Then the one price comes back shaped like Stripe's, with its product inline
    assert price.id.startswith("price_")
    assert product.id.startswith("prod_")
    assert [p.id for p in listed.data] == [price.id]
    found = listed.data[0]
    assert found.product.name == "Team plan"
    assert found.type == "recurring"
    assert found.recurring.interval == "month"
    assert found.recurring.interval_count == 1
    assert (found.unit_amount, found.currency, found.livemode) == (4900, "usd", False)
    assert client.v1.prices.retrieve(price.id).lookup_key == "team_monthly"
    assert listed.url == "/v1/prices"
    assert listed.has_more is False


def test_lookup_key_moves_to_a_new_price_only_with_transfer_lookup_key(
    client: stripe.StripeClient,
) -> None:
    # Given a price that owns the lookup key "pro"
    old = one_time_price(client, 1000)
    client.v1.prices.update(old.id, params={"lookup_key": "pro"})
    new = client.v1.prices.create(
        params={"product": old.product, "currency": "usd", "unit_amount": 2000}
    )

    # When another price claims it without transfer_lookup_key, then with it
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.prices.update(new.id, params={"lookup_key": "pro"})
    client.v1.prices.update(new.id, params={"lookup_key": "pro", "transfer_lookup_key": True})

    # Then the first attempt is refused and the second moves the key
    assert error.value.param == "lookup_key"
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    assert client.v1.prices.list(params={"lookup_keys": ["pro"]}).data[0].id == new.id


def test_inactive_prices_are_filtered_out_of_an_active_listing(
    client: stripe.StripeClient,
) -> None:
    kept = monthly_price(client)
    retired = monthly_price(client)
    client.v1.prices.update(retired.id, params={"active": False})

    active = client.v1.prices.list(params={"active": True})

    assert [p.id for p in active.data] == [kept.id]


def test_product_update_changes_fields_and_merges_metadata(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(params={"name": "Old", "metadata": {"a": "1", "b": "2"}})

    updated = client.v1.products.update(
        product.id, params={"name": "New", "metadata": {"b": "", "c": "3"}}
    )

    assert updated.name == "New"
    assert updated.metadata.to_dict() == {"a": "1", "c": "3"}


def test_customers_are_found_by_email_list_and_by_metadata_search(
    client: stripe.StripeClient,
) -> None:
    # Given two customers
    ada = client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"user_id": "u_1"}}
    )
    client.v1.customers.create(params={"email": "bob@example.com", "metadata": {"user_id": "u_2"}})

    # When they are looked up by email and searched by metadata and email
    by_email = client.v1.customers.list(params={"email": "ada@example.com"})
    by_metadata = client.v1.customers.search(params={"query": "metadata['user_id']:'u_1'"})
    by_query_email = client.v1.customers.search(params={"query": 'email:"ada@example.com"'})
    nobody = client.v1.customers.search(params={"query": "metadata['user_id']:'u_3'"})

    # Then only Ada matches, in a search_result
    assert [c.id for c in by_email.data] == [ada.id]
    assert [c.id for c in by_metadata.data] == [ada.id]
    assert [c.id for c in by_query_email.data] == [ada.id]
    assert by_metadata.object == "search_result"
    assert nobody.data == []
    assert ada.id.startswith("cus_")


def test_customer_update_is_visible_on_retrieve(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"email": "x@example.com"})

    client.v1.customers.update(customer.id, params={"name": "Grace", "metadata": {"k": "v"}})

    fetched = client.v1.customers.retrieve(customer.id)
    assert (fetched.name, fetched.metadata.to_dict(), fetched.email) == (
        "Grace",
        {"k": "v"},
        "x@example.com",
    )


def test_invalid_search_query_is_a_400_naming_the_query(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.customers.search(params={"query": "favourite_colour:'blue'"})
    assert error.value.param == "query"


def test_lists_paginate_with_starting_after(client: stripe.StripeClient) -> None:
    # Given five customers (lists are newest first)
    ids = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(5)]

    # When they are read two at a time
    first = client.v1.customers.list(params={"limit": 2})
    second = client.v1.customers.list(params={"limit": 2, "starting_after": first.data[-1].id})
    everything = [c.id for c in client.v1.customers.list(params={"limit": 2}).auto_paging_iter()]

    # Then the pages follow each other and the iterator walks them all
    assert [c.id for c in first.data] == [ids[4], ids[3]]
    assert first.has_more
    assert [c.id for c in second.data] == [ids[2], ids[1]]
    assert everything == list(reversed(ids))


def test_unknown_parameter_is_rejected_with_its_name(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.products.create(params={"name": "x", "colour": "red"})
    assert error.value.code == "parameter_unknown"
    assert error.value.param == "colour"
    assert error.value.http_status == 400


def test_non_integer_amount_is_rejected_as_parameter_invalid_integer(
    client: stripe.StripeClient,
) -> None:
    product = client.v1.products.create(params={"name": "x"})
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "unit_amount": "12.5"}
        )
    assert (error.value.code, error.value.param) == ("parameter_invalid_integer", "unit_amount")


def test_missing_object_is_a_404_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert error.value.http_status == 404
    assert error.value.code == "resource_missing"
    assert "No such customer: 'cus_doesnotexist'" in str(error.value.user_message)


def test_unknown_url_is_a_404(emu: EmulatorHandle) -> None:
    response = httpx.get(
        f"{emu.base_url}/v1/nothing_here", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "Unrecognized request URL" in response.json()["error"]["message"]


def test_wrong_or_missing_key_is_an_authentication_error(emu: EmulatorHandle) -> None:
    # Given an emulator that only accepts one key
    with start_emulator(port=0, api_key="sk_test_only_this_one") as strict:
        wrong = stripe.StripeClient(
            "sk_test_another", base_addresses={"api": strict.base_url}, max_network_retries=0
        )
        right = stripe.StripeClient(
            "sk_test_only_this_one", base_addresses={"api": strict.base_url}
        )

        # When each key is used, and when no key is sent at all
        with pytest.raises(stripe.AuthenticationError) as error:
            wrong.v1.customers.list()
        anonymous = httpx.get(f"{strict.base_url}/v1/customers")

        # Then the wrong key and the missing key get 401 and the right one works
        assert error.value.http_status == 401
        assert "Invalid API Key provided" in str(error.value.user_message)
        assert anonymous.status_code == 401
        assert right.v1.customers.list().data == []


def test_live_mode_keys_are_refused_by_default(emu: EmulatorHandle) -> None:
    live = stripe.StripeClient(
        "sk_live_nope", base_addresses={"api": emu.base_url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError):
        live.v1.products.list()


def test_basic_auth_like_curl_is_accepted(emu: EmulatorHandle) -> None:
    response = httpx.get(f"{emu.base_url}/v1/customers", auth=(API_KEY, ""))
    assert response.status_code == 200
    assert response.json()["object"] == "list"
