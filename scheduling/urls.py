from __future__ import annotations

from django.urls import path

from scheduling import views

app_name = "scheduling"

urlpatterns = [
    path("tasks/<int:pk>/schedule/", views.schedule, name="schedule"),
    path("tasks/<int:pk>/schedule/set/", views.set_schedule_view, name="set_schedule"),
    path("tasks/<int:pk>/runs/log/", views.run_log_view, name="run_log"),
]
