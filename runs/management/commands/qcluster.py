"""django-q2's `qcluster`, plus: the cluster's processes stop when its main process dies (runs/lifeline.py),
and SIGUSR1 to any of its processes writes the stacks of all that process's threads to its stderr.

INSTALLED_APPS lists `runs` before `django_q`, so this command is the one `manage.py qcluster` runs.
"""

from __future__ import annotations

import faulthandler
import importlib
import signal
from typing import Any

from runs import lifeline, q2


class Command(q2.ClusterCommand):
    help = "Start a django-q2 cluster (copy jobs, or the scheduler tick with Q_CLUSTER_NAME=control)."

    def handle(self, *args: Any, **options: Any) -> None:
        # For a worker that seems stuck: `kill -USR1 <pid>` prints where each of its threads is (README,
        # "Production"). Registered before the fork, so the sentinel and every worker inherit it.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
        # The jobs' module, imported before the fork: a worker recycled after `recycle` jobs (settings.Q_CLUSTER)
        # starts with it instead of importing it again at its first job.
        importlib.import_module("runs.jobs")
        lifeline.install()
        super().handle(*args, **options)
