"""Logger, tracer, metrics and Sentry, configured once per container.

The Powertools objects are cheap to create and read their configuration from the standard
``POWERTOOLS_*`` variables the template sets. Sentry is imported only when ``SENTRY_DSN`` is
set, so functions without it pay nothing at cold start.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.types import PowertoolsLogRecord

from payments.scrub import scrub, scrub_text

if TYPE_CHECKING:
    from aws_lambda_powertools import Metrics, Tracer

    from payments.settings import Settings

SERVICE_NAME = "payments"
METRICS_NAMESPACE = "Payments"


class ScrubbingFormatter(LambdaPowertoolsFormatter):
    """Structured JSON logs with secrets and personal data removed from the final line."""

    def serialize(self, log: dict[str, Any] | PowertoolsLogRecord) -> str:
        return scrub_text(super().serialize(log))


logger = Logger(service=SERVICE_NAME, logger_formatter=ScrubbingFormatter())


# Tracer pulls in the X-Ray SDK and botocore, Metrics its own machinery: built on first use so
# a function that never traces or emits a metric does not pay for them at cold start.
@lru_cache(maxsize=1)
def get_tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE_NAME)


@lru_cache(maxsize=1)
def get_metrics() -> Metrics:
    from aws_lambda_powertools import Metrics

    metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
    # dev and prod stacks may share an account: each alarm watches its own stage's metrics.
    stage = os.environ.get("STAGE", "").strip()
    if stage:
        metrics.set_default_dimensions(stage=stage)
    return metrics


def __getattr__(name: str) -> Any:
    # ``from payments.observability import metrics`` keeps working, lazily.
    if name == "metrics":
        return get_metrics()
    if name == "tracer":
        return get_tracer()
    raise AttributeError(name)


_sentry_started = False


def _before_send(event: Any, hint: Any) -> Any:
    return scrub(event)


def init_sentry(settings: Settings) -> bool:
    """Start Sentry once per container when a DSN is configured. Returns whether it runs."""
    dsn = settings.sentry_dsn.get_secret_value() if settings.sentry_dsn is not None else None
    return start_sentry(dsn, settings.sentry_environment)


def start_sentry(dsn: str | None, environment: str) -> bool:
    """``init_sentry`` without the settings model (the webhook reads its environment itself)."""
    global _sentry_started
    if _sentry_started or not dsn:
        return _sentry_started
    import sentry_sdk
    from sentry_sdk.integrations.aws_lambda import AwsLambdaIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[
            AwsLambdaIntegration(timeout_warning=True),
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        send_default_pii=False,
        # Local variables of stack frames may hold keys, tokens and payloads.
        include_local_variables=False,
        max_request_body_size="never",
        traces_sample_rate=0.0,
        before_send=_before_send,
        before_send_transaction=_before_send,
    )
    _sentry_started = True
    return True


def capture_exception(exc: BaseException) -> None:
    """Report an exception we answered with a generic 500 (details never reach the caller)."""
    if _sentry_started:
        import sentry_sdk

        sentry_sdk.capture_exception(exc)


def alert(message: str, **context: Any) -> None:
    """Raise a human-visible alert: an error log line and, when configured, a Sentry event.

    For business events that need a person (a dispute, a price that drifted from the catalog),
    not for exceptions, which Sentry captures by itself.
    """
    logger.error(message, extra={"alert": True, **context})
    if _sentry_started:
        import sentry_sdk

        with sentry_sdk.new_scope() as scope:
            for key, value in context.items():
                scope.set_extra(key, value)
            sentry_sdk.capture_message(message, level="error")
