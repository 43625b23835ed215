"""Secrets named by ARN: read through Powertools from Secrets Manager and SSM (moto), once per
container, re-read after their maximum age; plain variables (local, tests) need no AWS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from payments.adapters import secrets
from payments.adapters.secrets import SecretCache, SecretUnavailable
from payments.errors import ConfigurationError
from payments.runtime import bootstrap
from payments.settings import get_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings_env(env: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean service environment; settings and secrets re-read for each test."""
    for name in ("STRIPE_SECRET_KEY_ARN", "MAKE_API_KEY_ARN", "STRIPE_WEBHOOK_SECRET_ARN"):
        env.delenv(name, raising=False)
    yield env
    get_settings.cache_clear()


class CountingFetcher:
    """A fetcher over a dict, counting reads: what the cache does without AWS in the way."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads: list[str] = []

    def __call__(self, reference: str) -> str:
        self.reads.append(reference)
        if reference not in self.values:
            raise KeyError(reference)
        return self.values[reference]


@pytest.fixture
def fetcher() -> Iterator[CountingFetcher]:
    counting = CountingFetcher({})
    secrets.use_fetcher(counting)
    yield counting
    secrets.use_fetcher()


def test_a_secret_in_secrets_manager_becomes_the_setting(
    aws: Callable[[str], Any], settings_env: pytest.MonkeyPatch
) -> None:
    # Given the Stripe key kept in Secrets Manager and only its ARN in the environment
    arn = aws("secretsmanager").create_secret(
        Name="payments-test/STRIPE_SECRET_KEY-sm", SecretString="sk_test_from_secrets_manager"
    )["ARN"]
    settings_env.setenv("STRIPE_SECRET_KEY_ARN", arn)

    # When the settings are read, then the key is the secret's value
    key = get_settings().stripe_secret_key
    assert key is not None
    assert key.get_secret_value() == "sk_test_from_secrets_manager"


def test_a_securestring_parameter_in_ssm_becomes_the_setting(
    aws: Callable[[str], Any], settings_env: pytest.MonkeyPatch
) -> None:
    ssm = aws("ssm")
    ssm.put_parameter(Name="/payments/test/MAKE_API_KEY", Value="make_key", Type="SecureString")
    arn = ssm.get_parameter(Name="/payments/test/MAKE_API_KEY")["Parameter"]["ARN"]
    settings_env.setenv("MAKE_API_KEY_ARN", arn)

    key = get_settings().make_api_key
    assert key is not None
    assert key.get_secret_value() == "make_key"


def test_plain_variables_need_no_secret_store(
    fetcher: CountingFetcher, settings_env: pytest.MonkeyPatch
) -> None:
    # Given the local way: the value itself, and even a stale ARN beside it
    settings_env.setenv("STRIPE_SECRET_KEY", "sk_test_plain")
    settings_env.setenv("STRIPE_SECRET_KEY_ARN", "arn:aws:secretsmanager:us-east-1:1:secret:x")

    key = get_settings().stripe_secret_key

    # Then the plain value wins and nothing is fetched
    assert key is not None
    assert key.get_secret_value() == "sk_test_plain"
    assert fetcher.reads == []


def test_a_secret_is_read_once_per_container(
    fetcher: CountingFetcher, settings_env: pytest.MonkeyPatch
) -> None:
    fetcher.values["arn:sm:stripe"] = "sk_test_once"
    settings_env.setenv("STRIPE_SECRET_KEY_ARN", "arn:sm:stripe")

    for _ in range(3):
        bootstrap("stripe_secret_key")
        get_settings.cache_clear()  # even settings rebuilt read the cached value

    assert fetcher.reads == ["arn:sm:stripe"]


def test_a_secret_changed_where_it_is_kept_reaches_a_warm_container(
    fetcher: CountingFetcher, settings_env: pytest.MonkeyPatch
) -> None:
    # Given a warm container that read the key ten minutes ago
    now = [1000.0]
    settings_env.setattr(secrets.secret_cache(), "clock", lambda: now[0])
    fetcher.values["arn:sm:stripe"] = "sk_test_old"
    settings_env.setenv("STRIPE_SECRET_KEY_ARN", "arn:sm:stripe")
    first = bootstrap("stripe_secret_key").value("stripe_secret_key")

    # When the key is rotated and the maximum age passes
    fetcher.values["arn:sm:stripe"] = "sk_test_new"
    now[0] += secrets.MAX_AGE_SECONDS - 1
    before_expiry = bootstrap("stripe_secret_key").value("stripe_secret_key")
    now[0] += 2
    after_expiry = bootstrap("stripe_secret_key").value("stripe_secret_key")

    # Then the next invocation after the maximum age uses the new key
    assert (first, before_expiry, after_expiry) == ("sk_test_old", "sk_test_old", "sk_test_new")


def test_a_secret_that_cannot_be_read_at_cold_start_names_its_variable(
    fetcher: CountingFetcher, settings_env: pytest.MonkeyPatch
) -> None:
    settings_env.setenv("STRIPE_WEBHOOK_SECRET_ARN", "arn:sm:missing")
    with pytest.raises(ConfigurationError) as failed:
        bootstrap("stripe_webhook_secret")
    assert "STRIPE_WEBHOOK_SECRET could not be read from arn:sm:missing" in failed.value.message


def test_a_failed_re_read_keeps_the_last_value_and_waits_before_retrying() -> None:
    # Given a cache holding a value past its maximum age, and a store that now fails
    now = [0.0]
    store = CountingFetcher({"ref": "v1"})
    cache = SecretCache(store, max_age_seconds=600, clock=lambda: now[0])
    assert cache.get("ref") == "v1"
    del store.values["ref"]
    now[0] = 601

    # When it is refreshed, then nothing changed, and the next try waits a minute
    assert cache.refresh() is False
    assert cache.get("ref") == "v1"
    now[0] += 30
    cache.refresh()
    assert store.reads == ["ref", "ref"]
    now[0] += 31
    cache.refresh()
    assert store.reads == ["ref", "ref", "ref"]


def test_an_empty_secret_is_refused() -> None:
    cache = SecretCache(CountingFetcher({"ref": "  "}))
    with pytest.raises(SecretUnavailable, match="MAKE_API_KEY is empty"):
        cache.get("ref", "MAKE_API_KEY")


def test_the_error_never_carries_the_stores_message() -> None:
    def leaky(reference: str) -> str:
        # What a store's error may quote: the reference, or a value that is not ours to show.
        raise RuntimeError(f"AccessDenied for {reference}: value starts hunter2-9f3a")

    with pytest.raises(SecretUnavailable) as failed:
        SecretCache(leaky).get("arn:sm:x", "STRIPE_SECRET_KEY")
    assert "hunter2" not in failed.value.message
    assert "AccessDenied" not in failed.value.message
    assert failed.value.__cause__ is None
