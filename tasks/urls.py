from __future__ import annotations

from django.urls import path

from tasks import consent_views, views

# The site adds the task list and the task page to this namespace (imapcopier/urls.py).
app_name = "tasks"

urlpatterns = [
    path("tasks/new/", views.task_create, name="create"),
    path("tasks/<int:pk>/edit/", views.task_edit, name="edit"),
    path("tasks/<int:pk>/delete/", views.task_delete, name="delete"),
    path("tasks/<int:pk>/folders/", views.folder_mapping, name="folders"),
    path("tasks/<int:pk>/accounts/new/", views.account_create, name="account_create"),
    path(
        "tasks/<int:pk>/accounts/export.csv",
        views.account_export,
        name="account_export",
    ),
    path("tasks/<int:pk>/accounts/import/", views.account_import, name="import"),
    path(
        "tasks/<int:pk>/accounts/import/preview/",
        views.import_preview,
        name="import_preview",
    ),
    path(
        "tasks/<int:pk>/accounts/import/confirm/",
        views.import_confirm,
        name="import_confirm",
    ),
    path(
        "tasks/<int:pk>/accounts/import/cancel/",
        views.import_cancel,
        name="import_cancel",
    ),
    path(
        "tasks/<int:pk>/accounts/<int:account_pk>/edit/",
        views.account_edit,
        name="account_edit",
    ),
    path(
        "tasks/<int:pk>/accounts/<int:account_pk>/delete/",
        views.account_delete,
        name="account_delete",
    ),
    path(
        "tasks/<int:pk>/accounts/<int:account_pk>/test/",
        views.account_test,
        name="account_test",
    ),
    path("tasks/<int:pk>/accounts/<int:account_pk>/park/", views.account_park, name="account_park"),
    path("tasks/<int:pk>/accounts/park-failed/", views.account_park, {"account_pk": 0}, name="accounts_park_failed"),
    path("tasks/<int:pk>/accounts/<int:account_pk>/resume/", views.account_resume, name="account_resume"),
    path("consent/done/", consent_views.consent_callback, name="consent_callback"),
    path("consent/<str:token>/", consent_views.consent_start, name="consent_start"),
    path("endpoints/", views.endpoint_list, name="endpoint_list"),
    path("endpoints/new/", views.endpoint_create, name="endpoint_create"),
    path("endpoints/<int:pk>/edit/", views.endpoint_edit, name="endpoint_edit"),
    path("endpoints/<int:pk>/delete/", views.endpoint_delete, name="endpoint_delete"),
    path("endpoints/<int:pk>/test/", views.endpoint_test, name="endpoint_test"),
]
