"""Redaction of secrets and personal data before anything leaves the process.

Used by the log formatter and by Sentry's ``before_send`` so that keys, tokens, signatures,
e-mail addresses and card-like numbers never reach CloudWatch or Sentry, whatever a developer
passes to ``logger.info(..., extra=...)`` or whatever ends up in an exception message.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

_SENSITIVE_KEY = re.compile(
    r"(authorization|stripe[-_]signature|cookie|token|secret|password|api[-_]?key|apikey|dsn"
    r"|email|card|cvc|iban|signature|bearer|conninfo|database[-_]?url|^url$|[-_]url$"
    r"|webhook[-_]?url)",
    re.IGNORECASE,
)

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Underscores too: local and test keys (sk_test_local_emulator) are keys all the same.
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z_]{6,}"),
    re.compile(r"\bwhsec_[0-9A-Za-z_+/=]{6,}"),
    re.compile(r"\bsk_sb_[0-9A-Za-z_]{4,}"),
    # Supabase's secret API keys.
    re.compile(r"\bsb_secret_[0-9A-Za-z_-]{6,}"),
    # A PaymentIntent's (or SetupIntent's) client secret lets a browser confirm the payment.
    re.compile(r"\b(?:pi|seti)_[0-9A-Za-z]+_secret_[0-9A-Za-z]+"),
    # A Make.com webhook URL is itself a credential: whoever knows it can trigger the scenario.
    re.compile(r"https?://hook\.[a-z0-9.-]*make\.com/[^\s\"']+", re.IGNORECASE),
    # Connection URLs with a password (postgresql://user:password@host/db).
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@\"']+:[^\s@\"']+@[^\s\"']+", re.IGNORECASE),
    # libpq key=value connection strings.
    re.compile(r"\bpassword\s*=\s*[^\s\"']+", re.IGNORECASE),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"\bt=\d{9,11},v[01]=[0-9a-f]{16,}[^\s\"']*"),
    re.compile(r"\bv1=[0-9a-f]{32,}"),
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    # 13-19 digits, optionally grouped: a card number must never be written anywhere.
    re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
)


def scrub_text(text: str) -> str:
    """Replace every secret-looking or personal substring of ``text``."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def scrub(value: Any, _depth: int = 0) -> Any:
    """Deep-copy ``value`` with sensitive keys and substrings redacted."""
    if _depth > 32:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if isinstance(key, str) and _SENSITIVE_KEY.search(key) and value[key]
                else scrub(value[key], _depth + 1)
            )
            for key in value
        }
    if isinstance(value, list | tuple):
        return [scrub(item, _depth + 1) for item in value]
    return value
