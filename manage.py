#!/usr/bin/env python
from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imapcopier.settings")
    from imapcopier.boot import load_settings_or_exit, run_standalone, standalone_command

    load_settings_or_exit()
    module = standalone_command(sys.argv)
    if module is not None:  # copymailbox: no django.setup(), which would import the whole site
        run_standalone(module, sys.argv)
        return
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
