from __future__ import annotations

from django.contrib import admin
from django.db import models

from tasks.forms import AccountAdminForm, EndpointForm
from tasks.models import Account, Endpoint, Task
from tasks.services import forget_tests_of_endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm  # OAuth 2.0 secrets write-only here too, checked like on the endpoint page
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # as EndpointForm
    list_display = [
        "label",
        "host",
        "port",
        "security",
        "verify_tls",
        "max_connections",
    ]
    list_filter = ["security", "verify_tls"]
    search_fields = ["label", "host"]

    def save_model(self, request, obj, form, change) -> None:  # type: ignore[no-untyped-def]
        super().save_model(request, obj, form, change)
        if change:
            forget_tests_of_endpoint(obj, form.changed_data)  # as the endpoint page does


class AccountInline(admin.TabularInline):
    model = Account
    form = AccountAdminForm
    fields = [
        "source_user",
        "source_password",
        "destination_user",
        "destination_password",
        "source_test_status",
        "destination_test_status",
    ]
    readonly_fields = ["source_test_status", "destination_test_status"]
    extra = 0


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "source",
        "destination",
        "status",
        "schedule_interval_seconds",
        "broken",
        "updated_at",
    ]
    list_filter = ["status", "broken", "schedule_interval_seconds"]
    search_fields = ["name", "source__label", "destination__label"]
    # The schedule is read-only here: it changes only through scheduling.services.set_schedule (the task
    # page, the API), which refuses untested accounts and stamps the anchor. Edited here, it would show
    # "Every 1h" and never run.
    readonly_fields = [
        "status",
        "schedule_interval_seconds",
        "schedule_anchor",
        "broken",
        "schedule_waiting_accounts",
        "created_at",
        "updated_at",
    ]
    # The webhook secret is write-only: set on the task form, never rendered back (not even here).
    exclude = ["notify_webhook_secret"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    inlines = [AccountInline]


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountAdminForm
    list_display = [
        "source_user",
        "destination_user",
        "task",
        "source_test_status",
        "destination_test_status",
    ]
    list_filter = ["source_test_status", "destination_test_status", "task"]
    search_fields = ["source_user", "destination_user", "task__name"]
    readonly_fields = [
        "source_test_status",
        "source_test_message",
        "source_tested_at",
        "destination_test_status",
        "destination_test_message",
        "destination_tested_at",
    ]
