"""One typed model for every environment variable the service reads.

Each function validates it once per container (``get_settings``) and names the variables it
cannot work without; a missing one fails the cold start with a message naming it, never later
with a KeyError in the middle of a payment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import ConfigDict, Field, SecretStr, ValidationError, field_validator

from payments.adapters.secrets import resolve_references
from payments.errors import ConfigurationError
from payments.schema import Model

# A comma-separated variable (split by ``_split_commas``).
CommaList = tuple[str, ...]


class Settings(Model):
    """The environment of DESIGN.md §4. Optional here; each function states what it requires.

    A plain model read from ``os.environ`` by ``get_settings`` (each field from the variable of
    its name, in any case): every variable is a string, so nothing needs a settings library,
    whose import cost every function's cold start a fifth more.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    # A second accepted signing secret while a rotated endpoint secret rolls out.
    stripe_webhook_secret_previous: SecretStr | None = None
    stripe_api_base: str | None = None
    # Base of the 2^i backoff between Stripe retries; lowered only by tests and the emulator.
    stripe_retry_base_seconds: float = Field(default=1.0, ge=0.0, le=5.0)

    supabase_url: str | None = None
    supabase_service_role_key: SecretStr | None = None
    supabase_jwt_secret: SecretStr | None = None
    database_url: SecretStr | None = None

    memberstack_secret_key: SecretStr | None = None
    memberstack_app_id: str | None = None
    memberstack_api_base: str = "https://admin.memberstack.com"
    # Where the token signing keys are published: Memberstack's for its own API base, a
    # stand-in's for another (payments.adapters.memberstack.jwks_url_for).
    memberstack_jwks_url: str | None = None
    admin_member_ids: CommaList = ()

    make_webhook_url: SecretStr | None = None
    make_api_key: SecretStr | None = None

    webhook_queue_url: str | None = None
    # The queue's dead letters, for GET /v1/admin/pipeline.
    webhook_dlq_url: str | None = None

    checkout_success_url: str | None = None
    checkout_cancel_url: str | None = None
    # The member account page the Billing Portal returns to; derived from the F5 page when unset.
    account_url: str | None = None
    # A member may buy a one-time track they already own (default: 409 already_purchased, and
    # a payment that gets through anyway is refunded in full by the worker).
    allow_repeat_purchases: bool = False
    # Signs plan-change quotes; without it, a key derived from STRIPE_SECRET_KEY is used.
    plan_quote_secret: SecretStr | None = None
    allowed_origins: CommaList = ()

    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "dev"

    retention_months: int = Field(default=24, ge=1, le=120)
    # How old a pending dispatch or an unapplied Stripe event must be before the reconciler
    # handles it itself (younger ones are still the worker's); make dev sets 0.
    reconcile_min_age_seconds: int = Field(default=300, ge=0, le=86_400)
    aws_endpoint_url: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # CloudFormation passes "" for an optional parameter left empty (e.g. SENTRY_DSN).
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_member_ids", "allowed_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("stripe_api_base", "memberstack_api_base", "supabase_url", mode="after")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    def require(self, *names: str) -> Settings:
        """Fail with every missing variable named, so one deploy fixes them all."""
        missing = [name.upper() for name in names if getattr(self, name) in (None, "", ())]
        if missing:
            raise ConfigurationError(
                "missing required environment variable(s): " + ", ".join(missing),
            )
        return self

    def value(self, name: str) -> str:
        """A required setting as plain text (secrets unwrapped), or a ConfigurationError."""
        self.require(name)
        raw = getattr(self, name)
        return raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)

    def require_store(self) -> Settings:
        """Either a direct Postgres URL or a Supabase project must be configured."""
        if self.database_url is None and not (self.supabase_url and self.supabase_service_role_key):
            raise ConfigurationError(
                "missing required environment variable(s): DATABASE_URL, "
                "or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY",
            )
        return self

    @property
    def is_admin_configured(self) -> bool:
        return bool(self.admin_member_ids)


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Each field's value from the variable of its name (in any case); a secret whose value is
    not set is read from where its ``<NAME>_ARN`` names."""
    fields = Settings.model_fields
    values: dict[str, Any] = {
        name.lower(): value for name, value in environ.items() if name.lower() in fields
    }
    # A deployed function names where each secret is kept (``<NAME>_ARN``), not its value.
    return {**values, **resolve_references(environ, fields)}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this container, read and validated once."""
    try:
        return Settings(**from_environment(os.environ))
    except ValidationError as exc:
        fields = ", ".join(str(err["loc"][0]).upper() for err in exc.errors() if err["loc"])
        raise ConfigurationError(f"invalid environment variable(s): {fields}") from None
