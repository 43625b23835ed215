"""Per-container start-up shared by every handler: settings validated once, Sentry started."""

from __future__ import annotations

from payments.adapters.secrets import refresh_secrets
from payments.observability import init_sentry
from payments.settings import Settings, get_settings


def bootstrap(*required: str, store: bool = False) -> Settings:
    """Validate the settings this function needs and start error reporting.

    Called at the top of each handler invocation; everything it does is cached, so only the
    first (cold) invocation pays for it, and a missing variable fails that first invocation
    with the variable's name.
    """
    if refresh_secrets():
        # A secret changed where it is kept (a rotated key): rebuild what depends on it.
        get_settings.cache_clear()
    settings = get_settings().require(*required)
    if store:
        settings.require_store()
    init_sentry(settings)
    return settings
