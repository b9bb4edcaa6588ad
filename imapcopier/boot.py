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


# Commands that use no model, no app and no URL: manage.py runs them without django.setup(), which
# imports every installed app, the admin and the web stack (about 0.25 s of CPU on the project's
# machine) for nothing. Such a command sets requires_system_checks = [] (the checks need the apps).
STANDALONE_COMMANDS = {"copymailbox": "runs.management.commands.copymailbox"}


def standalone_command(argv: list[str]) -> str | None:
    """The module of the command `argv` (manage.py's sys.argv) names, if it runs without Django set up."""
    return STANDALONE_COMMANDS.get(argv[1]) if len(argv) > 1 else None


def run_standalone(module: str, argv: list[str]) -> None:
    """Run a STANDALONE_COMMANDS command: logging as settings.LOGGING says, then the command itself
    (its --help, its errors and exit status as under execute_from_command_line). Exits (SystemExit)
    as the command does."""
    import importlib
    import logging.config

    from django.conf import settings

    # settings.LOGGING alone: Django's own default logging (django.utils.log.configure_logging) adds
    # the admins' mail handler, which imports the whole web stack for its error reports.
    logging.config.dictConfig(settings.LOGGING)
    importlib.import_module(module).Command().run_from_argv(argv)
