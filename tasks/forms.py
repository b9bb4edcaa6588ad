from __future__ import annotations

from typing import Any

from django import forms

from tasks.models import Account


class WriteOnlyPasswordField(forms.CharField):
    """A password input that never renders the stored value; left blank, it keeps it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "new-password"}
            ),
        )
        super().__init__(**kwargs)


class AccountAdminForm(forms.ModelForm):
    source_password = WriteOnlyPasswordField(
        help_text="Leave blank to keep the stored password."
    )
    destination_password = WriteOnlyPasswordField(
        help_text="Leave blank to keep the stored password (or, for a new account, to reuse the source password)."
    )

    class Meta:
        model = Account
        fields = [
            "task",
            "source_user",
            "source_password",
            "destination_user",
            "destination_password",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form must not carry the stored secret into the page, even as an initial value.
        self.initial.pop("source_password", None)
        self.initial.pop("destination_password", None)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        creating = self.instance.pk is None
        if creating and not data.get("source_password"):
            self.add_error(
                "source_password", "A new account needs the source password."
            )
        return data

    def save(self, commit: bool = True) -> Account:
        account: Account = super().save(commit=False)
        stored = Account.objects.filter(pk=account.pk).first() if account.pk else None
        source = self.cleaned_data.get("source_password")
        destination = self.cleaned_data.get("destination_password")
        account.source_password = source or (stored.source_password if stored else "")
        account.destination_password = destination or (
            stored.destination_password if stored else account.source_password
        )
        if commit:
            account.save()
        return account
