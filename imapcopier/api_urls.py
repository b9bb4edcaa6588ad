"""JSON API routes (DESIGN.md, "JSON API"). Views live in each app's api.py."""

from __future__ import annotations

from django.urls import path

from runs import api as runs_api
from tasks import api as tasks_api

app_name = "api"

urlpatterns = [
    path("tasks/<int:pk>", tasks_api.task_detail, name="task"),
    path("tasks/<int:pk>/schedule", tasks_api.task_schedule, name="task_schedule"),
    path("tasks/<int:pk>/runs", tasks_api.task_runs, name="task_runs"),
    path("tasks/<int:pk>/run", runs_api.task_run, name="task_run"),
    path("runs/<int:pk>/cancel", runs_api.run_cancel, name="run_cancel"),
]
