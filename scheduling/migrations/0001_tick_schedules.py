"""Create the django-q2 schedules that drive the 30 s tick (see scheduling/jobs.py)."""

from __future__ import annotations

from django.db import migrations
from django.utils import timezone


def install(apps, schema_editor) -> None:
    from scheduling.jobs import install_tick_schedules

    install_tick_schedules(apps.get_model("django_q", "Schedule"), timezone.now())


def uninstall(apps, schema_editor) -> None:
    from scheduling.jobs import TICK_SCHEDULES

    apps.get_model("django_q", "Schedule").objects.filter(
        name__in=list(TICK_SCHEDULES)
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
