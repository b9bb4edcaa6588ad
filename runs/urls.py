from __future__ import annotations

from django.urls import path

from runs import views

app_name = "runs"

urlpatterns = [
    path("tasks/<int:pk>/run/", views.run_start, name="start"),
    path("runs/<int:pk>/", views.run_report, name="report"),
    path("runs/<int:pk>/report.csv", views.run_report_csv, name="report_csv"),
    path("runs/<int:pk>/folders.csv", views.run_folders_csv, name="folders_csv"),
    path("runs/<int:pk>/accounts/<int:account_pk>/", views.account_run_report, name="account_run"),
    path("runs/<int:pk>/progress/", views.run_progress, name="progress"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="cancel"),
    path("runs/<int:pk>/accept/", views.run_accept_refusals, name="accept"),
    path("runs/<int:pk>/unaccept/<int:accepted_pk>/", views.run_unaccept_refusal, name="unaccept"),
    path("tasks/<int:pk>/watch/", views.task_watch, name="task_watch"),
    path("tasks/watch/", views.tasks_watch, name="tasks_watch"),
]
