"""django-q2's `qcluster`, plus: the cluster's processes stop when its main process dies (runs/lifeline.py).

INSTALLED_APPS lists `runs` before `django_q`, so this command is the one `manage.py qcluster` runs.
"""

from __future__ import annotations

from typing import Any

from runs import lifeline, q2


class Command(q2.ClusterCommand):
    help = "Start a django-q2 cluster (copy jobs, or the scheduler tick with Q_CLUSTER_NAME=control)."

    def handle(self, *args: Any, **options: Any) -> None:
        lifeline.install()
        super().handle(*args, **options)
