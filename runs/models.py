from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tasks.models import Account, Task


class RunQuerySet(models.QuerySet):
    def newest_first(self) -> RunQuerySet:
        """Latest start first; the id breaks ties between runs started in the same instant (Run.Meta.ordering)."""
        return self.order_by(*Run._meta.ordering)


class Run(models.Model):
    """One execution of a task: every account of the task copied once, in parallel."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        SCHEDULED = "scheduled", "Scheduled"

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    copied = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    reason = models.TextField(blank=True, help_text="Why the run failed or was cancelled, in words.")
    interrupted = models.BooleanField(
        default=False,
        help_text="Some account stopped without finishing (worker stopped or died, job lost, time limit): "
        "the next run resumes it, and the schedule breaker does not count it.",
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]  # newest first: RunQuerySet.newest_first says so explicitly
        indexes = [models.Index(fields=["task", "-started_at"], name="run_task_started")]
        constraints = [
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(status="running"),
                name="one_running_run_per_task",
            ),
            models.CheckConstraint(
                condition=Q(trigger__in=["manual", "scheduled"]),
                name="run_trigger_valid",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["running", "done", "failed", "cancelled"]),
                name="run_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.task_id} ({self.status})"

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING


class AccountRun(models.Model):
    """The copy of one account within a run, done by one django-q2 job."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="account_runs")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="account_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    copied = models.BigIntegerField(default=0)
    skipped = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    total_messages = models.BigIntegerField(default=0, help_text="Messages found on the source so far (for the ETA).")
    total_bytes = models.BigIntegerField(default=0)
    current_folder = models.CharField(max_length=1000, blank=True)
    last_error = models.TextField(blank=True)
    interrupted = models.BooleanField(
        default=False,
        help_text="Stopped without finishing for the worker's sake (stopped, died, lost job, time limit): resumable.",
    )
    message_errors = models.JSONField(
        default=list,
        blank=True,
        help_text="Per-message errors: folder, uid, subject, size, reason.",
    )
    warnings = models.JSONField(default=list, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the worker that ran it.")
    attempt = models.PositiveIntegerField(default=0, help_text="Fencing token: bumped on every claim.")
    enqueued_at = models.DateTimeField(null=True, blank=True)
    enqueues = models.PositiveSmallIntegerField(
        default=0,
        help_text="How many times its job was handed to the job queue (the reaper re-enqueues a lost job once).",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "account__source_user"]
        constraints = [
            models.UniqueConstraint(fields=["run", "account"], name="account_run_unique"),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed", "cancelled"]),
                name="account_run_status_valid",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="account_run_status_heartbeat")]

    def __str__(self) -> str:
        return f"{self.account} in run {self.run_id}"


class FolderState(models.Model):
    """What has been copied from one source folder of an account: what makes re-runs incremental."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="folder_states")
    source_folder = models.CharField(max_length=1000)
    destination_folder = models.CharField(max_length=1000)
    uidvalidity = models.BigIntegerField()
    copied_uids = models.TextField(blank=True, help_text="Source UIDs already copied, as an IMAP sequence set.")
    highest_modseq = models.BigIntegerField(null=True, blank=True)
    pending_uids = models.TextField(
        blank=True,
        help_text="Source UIDs whose APPEND was sent but not confirmed (the crash window).",
    )
    pending_uidnext = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The destination folder's UIDNEXT before the pending APPENDs were sent.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "source_folder"]
        constraints = [models.UniqueConstraint(fields=["account", "source_folder"], name="folder_state_unique")]

    def __str__(self) -> str:
        return f"{self.account}: {self.source_folder}"
