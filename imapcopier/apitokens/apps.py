from __future__ import annotations

from django.apps import AppConfig


class ApiTokensConfig(AppConfig):
    name = "imapcopier.apitokens"
    label = "apitokens"  # kept from when it was a top-level app: its table and migrations
    verbose_name = "API tokens"
    default_auto_field = "django.db.models.BigAutoField"
