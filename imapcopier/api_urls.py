"""JSON API routes; the views are in imapcopier/api.py."""

from __future__ import annotations

from django.urls import path

from imapcopier import api

app_name = "api"

urlpatterns = [
    path("tasks", api.task_list, name="tasks"),
    path("tasks/<int:pk>", api.task_detail, name="task"),
    path("tasks/<int:pk>/test", api.task_test, name="task_test"),
    path("runs/<int:pk>", api.run_detail, name="run"),
    path("runs/<int:pk>/accounts/<int:account_pk>", api.account_run_detail, name="account_run"),
    path("tasks/<int:pk>/schedule", api.task_schedule, name="task_schedule"),
    path("tasks/<int:pk>/runs", api.task_runs, name="task_runs"),
    path("tasks/<int:pk>/run", api.task_run, name="task_run"),
    path("runs/<int:pk>/cancel", api.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/not-copied", api.run_not_copied, name="run_not_copied"),
]
