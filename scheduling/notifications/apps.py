from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "scheduling.notifications"
    label = "notifications"  # kept from when it was a top-level app
    verbose_name = "Notifications"
