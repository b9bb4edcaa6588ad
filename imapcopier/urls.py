from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from imapcopier import metrics, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("imapcopier.api_urls")),
    path("", include("tasks.urls")),
    path("", include("runs.urls")),
    path("", include("scheduling.urls")),
]

handler404 = "imapcopier.views.not_found"
