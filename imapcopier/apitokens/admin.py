from __future__ import annotations

from django.contrib import admin

from imapcopier.apitokens.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-only view of the tokens: they are made in the UI or with `manage.py apitoken`; the digest is not shown."""

    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    fields = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
