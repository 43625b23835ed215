"""Secrets kept in AWS Secrets Manager or SSM Parameter Store, read once per container.

A deployed function is given, for each secret it needs, where the secret is kept rather than
its value: ``STRIPE_SECRET_KEY_ARN=arn:aws:secretsmanager:…`` (or an SSM parameter's ARN,
``arn:aws:ssm:…:parameter/…``). ``resolve_references`` turns those into values for the
settings model; a plain ``STRIPE_SECRET_KEY`` (local runs, tests) wins and nothing here runs.

Values are cached per container and re-read after ``MAX_AGE_SECONDS`` (``refresh_secrets``,
called at the start of each invocation), so a key changed with ``sam deploy`` reaches warm
containers within minutes, not only new ones. A secret that cannot be read at cold start is a
configuration error naming its variable; one that cannot be re-read keeps its last value.

Fetching is behind one small interface, ``(reference) -> value``: the default reads through
Powertools Parameters (boto3, in the Lambda runtime), and a function whose cold start cannot
afford boto3 installs its own fetcher with ``use_fetcher``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from payments.errors import ConfigurationError
from payments.observability import logger

REFERENCE_SUFFIX = "_ARN"
MAX_AGE_SECONDS = 600.0
# After a failed re-read, wait this long before trying again instead of on every invocation.
RETRY_AFTER_SECONDS = 60.0

SecretFetcher = Callable[[str], str]


class SecretUnavailable(ConfigurationError):
    code = "secret_unavailable"


def _service(reference: str) -> str:
    parts = reference.split(":")
    return parts[2] if reference.startswith("arn:") and len(parts) > 2 else "secretsmanager"


class _PowertoolsFetcher:
    """Secrets Manager secrets and SSM SecureString parameters through Powertools Parameters."""

    def __init__(self) -> None:
        self._providers: dict[str, Any] = {}

    def _provider(self, service: str) -> Any:
        if service not in self._providers:
            from aws_lambda_powertools.utilities import parameters

            self._providers[service] = (
                parameters.SSMProvider() if service == "ssm" else parameters.SecretsProvider()
            )
        return self._providers[service]

    def __call__(self, reference: str) -> str:
        service = _service(reference)
        provider = self._provider(service)
        # Our cache decides when to re-read; Powertools' own would only delay a rotation.
        if service == "ssm":
            value = provider.get(reference, decrypt=True, max_age=0)
        else:
            value = provider.get(reference, max_age=0)
        if not isinstance(value, str):
            raise TypeError("a secret must be a text value")
        return value


class SecretCache:
    """Secret values by reference, with the time each was read."""

    def __init__(
        self,
        fetcher: SecretFetcher,
        *,
        max_age_seconds: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetcher = fetcher
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._values: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _fetch(self, reference: str, variable: str) -> str:
        try:
            value = self.fetcher(reference)
        except Exception as exc:  # noqa: BLE001 - any failure means the same: not readable
            # The reference and the error type only: never a value, never the vendor message.
            raise SecretUnavailable(
                f"{variable} could not be read from {reference} ({type(exc).__name__})"
            ) from None
        if not value.strip():
            raise SecretUnavailable(f"{variable} is empty in {reference}")
        return value

    def get(self, reference: str, variable: str = "secret") -> str:
        with self._lock:
            cached = self._values.get(reference)
        if cached is not None:
            return cached[0]
        value = self._fetch(reference, variable)
        with self._lock:
            self._values[reference] = (value, self.clock())
        return value

    def refresh(self) -> bool:
        """Re-read every value older than the maximum age; whether any of them changed."""
        now = self.clock()
        with self._lock:
            due = {
                ref: value
                for ref, (value, read_at) in self._values.items()
                if now - read_at >= self.max_age_seconds
            }
        changed = False
        for reference, old in due.items():
            try:
                value = self._fetch(reference, "secret")
            except SecretUnavailable as exc:
                logger.warning(
                    "secret re-read failed; keeping its last value",
                    extra={
                        "reason": exc.message,
                    },
                )
                retry_at = now - self.max_age_seconds + RETRY_AFTER_SECONDS
                with self._lock:
                    self._values[reference] = (old, retry_at)
                continue
            changed = changed or value != old
            with self._lock:
                self._values[reference] = (value, now)
        return changed

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_cache = SecretCache(_PowertoolsFetcher())


def get_secret(reference: str, variable: str = "secret") -> str:
    """The value kept at ``reference`` (an ARN, or a Secrets Manager name), cached;
    ``variable`` names it in the error when it cannot be read."""
    return _cache.get(reference, variable)


def use_fetcher(fetcher: SecretFetcher | None = None) -> None:
    """Read secrets with ``fetcher`` from now on (None: a fresh Powertools one) and forget
    the values read so far."""
    _cache.fetcher = fetcher or _PowertoolsFetcher()
    _cache.clear()


def secret_cache() -> SecretCache:
    return _cache


def refresh_secrets() -> bool:
    """Re-read the secrets due for it; True when a value changed (settings must be rebuilt)."""
    return _cache.refresh()


def resolve_references(environ: Mapping[str, str], names: Iterable[str]) -> dict[str, Any]:
    """Values for the settings whose ``<NAME>_ARN`` is set and whose ``<NAME>`` is not."""
    resolved: dict[str, Any] = {}
    for name in names:
        variable = name.upper()
        reference = environ.get(variable + REFERENCE_SUFFIX, "").strip()
        if reference and not environ.get(variable, "").strip():
            resolved[name] = _cache.get(reference, variable)
    return resolved
