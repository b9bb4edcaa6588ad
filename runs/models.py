from __future__ import annotations

from django.conf import settings
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
    not_copied = models.BigIntegerField(default=0, help_text="Source messages not copied, whatever the reason.")
    altered = models.BigIntegerField(
        default=0, help_text="Messages the destination stored differently from what was sent (not in copied)."
    )
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
    source_messages = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Messages found on the source when the copy ended; empty: the mailbox was not (fully) read.",
    )
    not_copied_messages = models.BigIntegerField(
        default=0, help_text="Source messages not copied, whatever the reason (the sum of not_copied)."
    )
    altered = models.BigIntegerField(
        default=0,
        help_text="Messages that landed but that the destination stored differently from what was sent "
        "(each named in the warnings); counted apart from copied.",
    )
    not_copied = models.JSONField(
        default=dict,
        blank=True,
        help_text="Source messages not copied, by reason (runs.engine.NotCopied values).",
    )
    folder_totals = models.JSONField(
        default=list,
        blank=True,
        help_text="Per folder: source and destination message counts, copied, already there, not copied.",
    )
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
    destination_server = models.CharField(
        max_length=300,
        blank=True,
        help_text='The destination server the state was written for ("host:port"); empty: not known.',
    )
    destination_user = models.CharField(
        max_length=320,
        blank=True,
        help_text="The destination login the state was written for; empty: not known.",
    )
    destination_uidvalidity = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="UIDVALIDITY of the destination folder the state was written for; empty: not known.",
    )
    uid_map = models.TextField(
        blank=True,
        help_text='Source UID → destination UID of the copies ("S:E=D" runs), what flag changes follow.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "source_folder"]
        constraints = [models.UniqueConstraint(fields=["account", "source_folder"], name="folder_state_unique")]

    def __str__(self) -> str:
        return f"{self.account}: {self.source_folder}"


class AcceptedRefusal(models.Model):
    """A message the destination refused for good, which the operator accepted as not copied.

    It is no longer attempted nor counted as an error (so a scheduled task with one such message
    stops tripping the breaker), and every later report lists it as "accepted as not copied".
    Deleting the row un-accepts it: the next run tries the message again. Tied to the source
    folder's UIDVALIDITY: when that changes the UID names another message, and the row is ignored.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="accepted_refusals")
    source_folder = models.CharField(max_length=1000)
    uidvalidity = models.BigIntegerField()
    uid = models.BigIntegerField()
    subject = models.CharField(max_length=300, blank=True)
    size = models.BigIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="What the destination said when it refused the message.")
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    accepted_by_name = models.CharField(max_length=150, blank=True, help_text="Kept if the user is deleted.")
    accepted_at = models.DateTimeField()

    class Meta:
        ordering = ["account", "source_folder", "uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "source_folder", "uidvalidity", "uid"], name="accepted_refusal_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account}: {self.source_folder} UID {self.uid} accepted as not copied"
