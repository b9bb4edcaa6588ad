"""Fixtures the notification tests share: the HTTP receiver and in-process jobs with a locmem outbox."""

from tests.scheduling.notifications.test_notifications import receiver, sync_jobs  # noqa: F401
