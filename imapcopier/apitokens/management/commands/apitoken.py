from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from imapcopier.apitokens.models import ApiToken
from imapcopier.apitokens.services import create_token, revoke_token


class Command(BaseCommand):
    help = (
        "Manage JSON API tokens. `apitoken create <user> [--name N]` prints a new token once; "
        "`apitoken list [<user>]` lists tokens (never the token itself); `apitoken revoke <id>`."
    )

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="make a token for a user and print it (shown only this once)")
        create.add_argument("username")
        create.add_argument("--name", default="command line")
        listing = actions.add_parser("list", help="list tokens: id, user, name, hint, created, last used, status")
        listing.add_argument("username", nargs="?")
        revoke = actions.add_parser("revoke", help="revoke a token by its id")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        now = timezone.now()
        if action == "create":
            user = get_user_model().objects.filter(username=options["username"], is_active=True).first()
            if user is None:
                raise CommandError(f"no active user {options['username']!r}")
            token, text = create_token(user, options["name"], now=now)
            self.stderr.write(f"Token {token.pk} for {user.get_username()}; shown only this once:")
            self.stdout.write(text)
        elif action == "list":
            tokens = ApiToken.objects.select_related("user")
            if options["username"]:
                tokens = tokens.filter(user__username=options["username"])
            for token in tokens:
                used = token.last_used_at.isoformat() if token.last_used_at else "never"
                status = "active" if token.is_active else f"revoked {token.revoked_at.isoformat()}"
                self.stdout.write(
                    f"{token.pk}\t{token.user.get_username()}\t{token.name}\t{token.hint}…\t"
                    f"created {token.created_at.isoformat()}\tlast used {used}\t{status}"
                )
        elif action == "revoke":
            if not ApiToken.objects.filter(pk=options["token_id"]).exists():
                raise CommandError(f"no token {options['token_id']}")
            if revoke_token(options["token_id"], now=now):
                self.stdout.write(f"Token {options['token_id']} revoked.")
            else:
                self.stdout.write(f"Token {options['token_id']} was already revoked.")
