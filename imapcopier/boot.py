from __future__ import annotations

import sys

from django.core.exceptions import ImproperlyConfigured


def load_settings_or_exit() -> None:
    """Import the settings now, so a configuration mistake ends start-up with one clear line, not a traceback."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018  (forces the import)
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"imapcopier: configuration error: {exc}\n")
        raise SystemExit(2) from None
