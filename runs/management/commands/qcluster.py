"""django-q2's `qcluster`, plus: the cluster's processes stop when its main process dies (runs/lifeline.py).

INSTALLED_APPS lists `runs` before `django_q`, so this command is the one `manage.py qcluster` runs.
"""

from __future__ import annotations

from typing import Any

from django_q.management.commands.qcluster import Command as Q2Command

from runs import lifeline


class Command(Q2Command):
    help = "Start a django-q2 cluster (copy jobs, or the scheduler tick with Q_CLUSTER_NAME=control)."

    def handle(self, *args: Any, **options: Any) -> None:
        lifeline.install()
        super().handle(*args, **options)
