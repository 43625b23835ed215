from __future__ import annotations

import pytest

from payments.errors import ConfigurationError
from payments.settings import get_settings

pytestmark = pytest.mark.unit


def test_a_missing_required_variable_is_named(env: pytest.MonkeyPatch) -> None:
    env.setenv("STRIPE_SECRET_KEY", "sk_test_x")
    with pytest.raises(ConfigurationError) as caught:
        get_settings().require("stripe_secret_key", "stripe_webhook_secret", "webhook_queue_url")
    assert str(caught.value) == (
        "missing required environment variable(s): STRIPE_WEBHOOK_SECRET, WEBHOOK_QUEUE_URL"
    )


def test_store_needs_database_url_or_supabase(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="DATABASE_URL"):
        get_settings().require_store()
    env.setenv("SUPABASE_URL", "https://p.supabase.co")
    env.setenv("SUPABASE_SERVICE_ROLE_KEY", "key")
    get_settings.cache_clear()
    assert get_settings().require_store().supabase_url == "https://p.supabase.co"


def test_comma_separated_lists_are_split_and_trimmed(env: pytest.MonkeyPatch) -> None:
    env.setenv("ADMIN_MEMBER_IDS", " mem_1, mem_2 ,,")
    env.setenv("ALLOWED_ORIGINS", "https://a.example,https://b.example")
    settings = get_settings()
    assert settings.admin_member_ids == ("mem_1", "mem_2")
    assert settings.allowed_origins == ("https://a.example", "https://b.example")


def test_an_invalid_value_names_the_variable_without_echoing_it(env: pytest.MonkeyPatch) -> None:
    env.setenv("RETENTION_MONTHS", "forever")
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    assert "RETENTION_MONTHS" in str(caught.value)
    assert "forever" not in str(caught.value)


def test_secrets_do_not_appear_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("STRIPE_SECRET_KEY", "sk_test_supersecretvalue")
    assert "supersecretvalue" not in repr(get_settings())
