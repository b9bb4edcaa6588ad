from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from imapcopier import metrics, views
from tasks import urls as tasks_urls

# The site's pages that compose several apps (imapcopier/views.py) keep their names in the `tasks`
# namespace, beside the pages of the tasks app: `tasks:list`, `tasks:detail` are what an operator
# calls the task list and the task page, wherever their code lives.
task_pages = [
    path("", views.task_list, name="list"),
    path("tasks/<int:pk>/", views.task_detail, name="detail"),
    path("tasks/<int:pk>/accounts/", views.account_table, name="account_table"),
    path("tasks/<int:pk>/accounts/test/", views.account_test_all, name="account_test_all"),
]

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("imapcopier.api_urls")),
    path("", include((task_pages + tasks_urls.urlpatterns, tasks_urls.app_name))),
    path("", include("runs.urls")),
    path("", include("scheduling.urls")),
    path("", include("imapcopier.apitokens.urls")),
]

# Under /api/ the errors Django answers itself (an unknown URL, a bad Host, a crash) are JSON too.
handler400 = "imapcopier.api.bad_request"
handler404 = "imapcopier.views.not_found"  # a styled page; JSON under /api/ (imapcopier.api.page_not_found)
handler500 = "imapcopier.api.server_error"
