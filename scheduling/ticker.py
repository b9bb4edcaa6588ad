"""The tick: reap stale account runs, then start every task whose scheduled time has come.

Stateless: everything it decides comes from the database at `now`, so running it twice at once, on
two clusters, or after hours of downtime starts each due task once (the start itself is one atomic
claim in `runs.orchestrator.start_run`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from runs import orchestrator
from runs.models import Run
from scheduling.services import due_tasks
from tasks.models import Task

logger = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick did, for logs and tests."""

    reaped: int = 0
    started: list[int] = field(default_factory=list)  # run ids
    skipped: list[int] = field(default_factory=list)  # task ids already running
    refused: list[int] = field(default_factory=list)  # task ids refused or failed


def tick(now: datetime) -> TickReport:
    """Reap stale account runs, then start every due task with trigger `scheduled`.

    A task another start got to first is skipped quietly; any other refusal or error is logged for
    that task and the tick goes on with the next one.
    """
    report = TickReport()
    try:
        report.reaped = orchestrator.reap_stale(now)
    except Exception:
        logger.exception("tick: reaping stale account runs failed")
    for task in due_tasks(now):
        try:
            run = orchestrator.start_run(task.pk, trigger=Run.Trigger.SCHEDULED)
        except orchestrator.TaskAlreadyRunning:
            report.skipped.append(task.pk)
        except Task.DoesNotExist:
            pass  # deleted since this tick read it
        except orchestrator.RunRefused as refusal:
            logger.warning("tick: scheduled run of task %s refused: %s", task.pk, refusal)
            report.refused.append(task.pk)
        except Exception:
            logger.exception("tick: scheduled run of task %s could not start", task.pk)
            report.refused.append(task.pk)
        else:
            logger.info("tick: started scheduled run %s of task %s", run.pk, task.pk)
            report.started.append(run.pk)
    return report
