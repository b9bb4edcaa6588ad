from __future__ import annotations

from django.contrib import admin

from runs.models import AccountRun, FolderState, Run


class AccountRunInline(admin.TabularInline):
    model = AccountRun
    fields = [
        "account",
        "status",
        "copied",
        "skipped",
        "errors",
        "bytes",
        "current_folder",
        "last_error",
        "worker",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "copied",
        "skipped",
        "errors",
    ]
    list_filter = ["status", "trigger", "task"]
    search_fields = ["task__name"]
    date_hierarchy = "started_at"
    inlines = [AccountRunInline]


@admin.register(AccountRun)
class AccountRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "run",
        "account",
        "status",
        "copied",
        "skipped",
        "errors",
        "bytes",
        "heartbeat_at",
        "worker",
    ]
    list_filter = ["status", "run__task"]
    search_fields = ["account__source_user", "account__destination_user", "last_error"]


@admin.register(FolderState)
class FolderStateAdmin(admin.ModelAdmin):
    list_display = [
        "account",
        "source_folder",
        "destination_folder",
        "uidvalidity",
        "highest_modseq",
        "updated_at",
    ]
    list_filter = ["account__task"]
    search_fields = ["account__source_user", "source_folder", "destination_folder"]
