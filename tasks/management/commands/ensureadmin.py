from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "On first start, create the 'admin' superuser with a generated password and print it once."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        banner = "=" * 64
        self.stdout.write(
            f"{banner}\n  First start: created the administrator login\n"
            f"    user:     {username}\n    password: {password}\n"
            f"  It is shown only this once. Change it under Admin -> Users.\n{banner}"
        )
