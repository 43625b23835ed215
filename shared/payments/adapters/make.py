"""Make.com adapter: POSTs a dispatch to the ``add_project`` scenario's custom webhook.

Explicit timeouts and a bounded retry (network errors, 429 and 5xx; 2^i × base seconds, at most
``max_retries`` times and never past the Lambda's remaining time). Any other answer is final.
The webhook URL is itself a credential and, like the API key, never appears in a log line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import httpx

from payments import errors
from payments.deadline import remaining_seconds
from payments.observability import logger
from payments.settings import Settings

ATTEMPT_SECONDS = 5.0
TIMEOUT = httpx.Timeout(ATTEMPT_SECONDS, connect=2.0)
MAX_RETRIES = 2
BACKOFF_BASE_SECONDS = 0.5
API_KEY_HEADER = "x-make-apikey"


class MakeUnavailable(errors.UpstreamUnavailable):
    code = "make_unavailable"
    default_message = "Make.com did not accept the dispatch."


class MakeRejected(errors.UpstreamError):
    code = "make_rejected"
    default_message = "Make.com refused the dispatch."


class MakeWebhook:
    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        http_client: httpx.Client | None = None,
        max_retries: int = MAX_RETRIES,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._api_key = api_key
        self._http = http_client or httpx.Client(timeout=TIMEOUT)
        self._max_retries = max_retries
        self._backoff = backoff_base_seconds
        self._sleep = sleep

    def send(self, payload: Mapping[str, Any]) -> None:
        """Deliver ``payload``; return on a 2xx, raise ``MakeUnavailable``/``MakeRejected``."""
        if remaining_seconds() < ATTEMPT_SECONDS:
            # A post cut off by the Lambda's timeout may land all the same, and the whole batch
            # would then fail with it: leave this one to the retry (same idempotency key).
            logger.warning("make.com dispatch not attempted: too little time left")
            raise MakeUnavailable()
        attempt = 0
        while True:
            status, retryable = self._post(payload)
            if status is not None and 200 <= status < 300:
                return
            wait = self._backoff * 2**attempt
            # Keep time for the attempt after the wait, or give up now and let SQS retry.
            out_of_time = wait + ATTEMPT_SECONDS >= remaining_seconds()
            if not retryable or attempt >= self._max_retries or out_of_time:
                logger.warning(
                    "make.com dispatch failed",
                    extra={"http_status": status, "attempts": attempt + 1},
                )
                if retryable:
                    raise MakeUnavailable()
                raise MakeRejected()
            attempt += 1
            self._sleep(wait)

    def _post(self, payload: Mapping[str, Any]) -> tuple[int | None, bool]:
        try:
            response = self._http.post(
                self._url,
                json=dict(payload),
                headers={API_KEY_HEADER: self._api_key, "Accept": "application/json"},
            )
        except httpx.HTTPError:
            return None, True
        status = response.status_code
        return status, status == 429 or status >= 500


@lru_cache(maxsize=1)
def _cached_make(url: str, api_key: str) -> MakeWebhook:
    return MakeWebhook(url, api_key)


def get_make_webhook(settings: Settings) -> MakeWebhook:
    """The Make.com client of this container."""
    settings.require("make_webhook_url", "make_api_key")
    url, key = settings.make_webhook_url, settings.make_api_key
    if url is None or key is None:  # require() above guarantees them
        raise AssertionError("unreachable")
    return _cached_make(url.get_secret_value(), key.get_secret_value())
