from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db import models

from tasks import oauth
from tasks.models import WEBHOOK_SECRET_MIN_CHARS, Account, Endpoint, Task, parse_recipients
from tasks.services import ENDPOINT_TESTED_FIELDS, forget_endpoint_tests, forget_tests_of_endpoint


class WriteOnlyPasswordField(forms.CharField):
    """A password input that never renders the stored value; left blank, it keeps it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        )
        super().__init__(**kwargs)


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value (a stored secret, or one just posted)."""

    def format_value(self, value: Any) -> None:
        return None


class AccountAdminForm(forms.ModelForm):
    source_password = WriteOnlyPasswordField(help_text="Leave blank to keep the stored password.")
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
        task = data.get("task") or (self.instance.task if self.instance.task_id else None)
        # A side whose endpoint signs in with OAuth 2.0 needs no password.
        source_oauth = task is not None and task.source.uses_oauth
        destination_oauth = task is not None and task.destination.uses_oauth
        if creating and not data.get("source_password") and not source_oauth:
            self.add_error("source_password", "A new account needs the source password.")
        if creating and source_oauth and not destination_oauth and not data.get("destination_password"):
            self.add_error("destination_password", "A new account needs the destination password.")
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


def _https_urls(field: models.Field, **kwargs: Any) -> forms.Field | None:
    """Model fields to form fields; a URL typed without a scheme is https (Django 6's default)."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


# Endpoint secrets: write-only, a blank submit keeps the stored value.
ENDPOINT_SECRETS = ("oauth_client_secret", "oauth_client_certificate", "oauth_service_account_key")


class EndpointForm(forms.ModelForm):
    oauth_client_secret = WriteOnlyPasswordField(label="Client secret")
    oauth_client_certificate = forms.CharField(
        label="Client certificate and private key (PEM)",
        required=False,
        widget=WriteOnlyTextarea(
            attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE----- ... -----BEGIN PRIVATE KEY-----"}
        ),
    )
    oauth_service_account_key = forms.CharField(
        label="Service account key (JSON)",
        required=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "placeholder": '{"type": "service_account", ...}'}),
    )

    class Meta:
        model = Endpoint
        # Every setting that decides how accounts connect (one list: editing any of them forgets the
        # accounts' tests, tasks/services.py), plus the two that do not. The template places each field.
        fields = ["label", "max_connections", *sorted(ENDPOINT_TESTED_FIELDS)]
        formfield_callback = _https_urls
        widgets = {
            "ca_certificate": forms.Textarea(attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----"}),
            # app.js follows the port along when the security mode changes and the port was a default.
            "security": forms.Select(attrs={"data-default-ports": '{"ssl": 993, "starttls": 143, "plain": 143}'}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["auth_method"].required = False
        for name in ENDPOINT_SECRETS:
            # The form must not carry a stored secret into the page, even as an initial value.
            self.initial.pop(name, None)
            stored = bool(getattr(self.instance, name))
            self.fields[name].help_text = (
                "Stored encrypted and never shown. Leave blank to keep it."
                if stored
                else "Stored encrypted, never shown."
            )

    def save(self, commit: bool = True) -> Endpoint:
        """Saves; when commit, forgets the tests of the accounts using it if a tested field changed
        (the admin saves with commit=False and calls forget_tests_of_endpoint itself)."""
        endpoint: Endpoint = super().save(commit=commit)
        if commit and endpoint.pk:
            forget_tests_of_endpoint(endpoint, self.changed_data)
        return endpoint

    def clean_auth_method(self) -> str:
        # Absent from older clients' posts (the API, scripts): passwords, as before sign-in methods existed.
        return self.cleaned_data.get("auth_method") or Endpoint.AuthMethod.PASSWORD

    def clean_oauth_client_secret(self) -> str:
        return self.cleaned_data["oauth_client_secret"] or self.instance.oauth_client_secret

    def clean_oauth_client_certificate(self) -> str:
        text = self.cleaned_data["oauth_client_certificate"].strip()
        if not text:
            return self.instance.oauth_client_certificate
        certificate, key = oauth.split_certificate(text)
        if not (certificate and key):
            raise forms.ValidationError(
                "Paste the certificate and its private key, both in PEM form (-----BEGIN CERTIFICATE----- "
                "and -----BEGIN PRIVATE KEY-----), without a passphrase."
            )
        return text

    def clean_oauth_service_account_key(self) -> str:
        text = self.cleaned_data["oauth_service_account_key"].strip()
        if not text:
            return self.instance.oauth_service_account_key
        try:
            key = json.loads(text)
        except ValueError:
            raise forms.ValidationError("Paste the key file exactly as Google gave it (JSON).") from None
        if not isinstance(key, dict) or key.get("type") != "service_account" or not key.get("private_key"):
            raise forms.ValidationError(
                'This is not a service account key: it needs "type": "service_account" and a private key.'
            )
        return text

    def clean_ca_certificate(self) -> str:
        pem = self.cleaned_data["ca_certificate"].strip()
        if pem and "-----BEGIN CERTIFICATE-----" not in pem:
            raise forms.ValidationError("Paste the certificate in PEM form, starting with -----BEGIN CERTIFICATE-----.")
        return pem


class TaskForm(forms.ModelForm):
    """The task's name, endpoints and who is notified: e-mail recipients, and a webhook whose secret is
    write-only (never rendered; left blank it keeps the stored one; clearing the URL forgets it)."""

    notify_webhook_url = forms.URLField(
        label="Notify by webhook",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text=Task._meta.get_field("notify_webhook_url").help_text,
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.example.com/imapcopier"}),
    )
    notify_webhook_secret = WriteOnlyPasswordField(
        label="Webhook secret",
        help_text=f"{WEBHOOK_SECRET_MIN_CHARS} characters or more; the receiver checks the X-Imapcopier-Signature "
        "header (sha256=HMAC-SHA256 of the body) with it. Never shown again once saved.",
    )

    class Meta:
        model = Task
        fields = ["name", "source", "destination", "notify_emails", "notify_webhook_url", "notify_webhook_secret"]
        widgets = {"notify_emails": forms.Textarea(attrs={"rows": 2, "placeholder": "ops@example.com"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["source"].empty_label = "Choose the server to copy from"
        self.fields["destination"].empty_label = "Choose the server to copy to"
        # Kept aside before the form writes into the instance; never put into the page.
        self.stored_webhook_secret = self.instance.notify_webhook_secret if self.instance.pk else ""
        self.initial.pop("notify_webhook_secret", None)
        if self.stored_webhook_secret:
            self.fields[
                "notify_webhook_secret"
            ].help_text = "A secret is stored. Leave blank to keep it, or enter a new one to replace it."

    def clean_notify_webhook_secret(self) -> str:
        secret = self.cleaned_data.get("notify_webhook_secret") or ""
        if secret and len(secret) < WEBHOOK_SECRET_MIN_CHARS:
            raise forms.ValidationError(f"Use {WEBHOOK_SECRET_MIN_CHARS} characters or more.")
        return secret

    def clean_notify_emails(self) -> str:
        try:
            return ", ".join(parse_recipients(self.cleaned_data["notify_emails"]))
        except forms.ValidationError:
            raise forms.ValidationError("Enter e-mail addresses separated by commas or new lines.") from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.instance.pk and self.instance.is_running:
            raise forms.ValidationError(
                "This task is running: wait for the run to end or cancel it before changing it."
            )
        secret = data.get("notify_webhook_secret") or self.stored_webhook_secret
        if data.get("notify_webhook_url") and not secret and "notify_webhook_secret" not in self.errors:
            self.add_error("notify_webhook_secret", "A webhook needs a secret to sign its notifications.")
        return data

    def save(self, commit: bool = True) -> Task:
        task = super().save(commit=False)
        if not task.notify_webhook_url:
            task.notify_webhook_secret = ""  # no webhook, no secret kept
        elif not self.cleaned_data.get("notify_webhook_secret"):
            task.notify_webhook_secret = self.stored_webhook_secret
        if commit:
            task.save()
            self._save_m2m()
            forget_endpoint_tests(task, {"source", "destination"} & set(self.changed_data))
        return task


class AccountForm(AccountAdminForm):
    """The account form of the task page: the task comes from the URL, not from the form."""

    class Meta(AccountAdminForm.Meta):
        fields = [
            "source_user",
            "source_password",
            "destination_user",
            "destination_password",
        ]

    def __init__(self, *args: Any, task: Task, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.task = task
        if self.instance.pk is None:
            self.fields["source_password"].help_text = ""
            self.fields["destination_password"].help_text = (
                "" if task.source.uses_oauth else "Leave blank to use the source password."
            )
        # A side whose endpoint signs in with OAuth 2.0 has no password to ask for (the page shows
        # how it signs in instead, and the consent link for each user's consent).
        for side in ("source", "destination"):
            if getattr(task, side).uses_oauth:
                del self.fields[f"{side}_password"]

    def clean_source_user(self) -> str:
        user = self.cleaned_data["source_user"].strip()
        clash = Account.objects.filter(task=self.instance.task, source_user=user).exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("This task already has an account with this source user.")
        return user

    def save(self, commit: bool = True) -> Account:
        account = super().save(commit=False)
        changed = {"source_user", "source_password"} & set(self.changed_data)
        if changed or self.cleaned_data.get("source_password"):
            account.source_test_status = Account.TestStatus.UNTESTED
            account.source_test_message = ""
        if "destination_user" in self.changed_data or self.cleaned_data.get("destination_password"):
            account.destination_test_status = Account.TestStatus.UNTESTED
            account.destination_test_message = ""
        if commit:
            account.save()
        return account


class CsvUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="Columns: source_user, source_password, destination_user, destination_password, optionally "
        "sign_in (password or oauth). Header optional; an empty destination password reuses the source one; "
        "a side that signs in with OAuth 2.0 takes no password (leave it empty).",
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 1_000_000:.1f} MB; at most {MAX_CSV_BYTES // 1_000_000} MB "
                "can be imported at once. Split it into several files."
            )
        return upload


MAX_CSV_BYTES = 5 * 1024 * 1024  # about 50,000 accounts


class FolderMappingForm(forms.Form):
    """One field per source folder: the destination name, or skip."""

    def __init__(
        self,
        *args: Any,
        plans: list,
        mapping: dict[str, str],
        infos: dict | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.plans = plans
        self.infos = infos or {}
        for index, plan in enumerate(plans):
            explicit = mapping.get(plan.source)
            self.fields[f"dest_{index}"] = forms.CharField(
                required=False,
                max_length=1000,
                initial=explicit if explicit else "",
                widget=forms.TextInput(attrs={"placeholder": plan.destination or ""}),
            )
            self.fields[f"skip_{index}"] = forms.BooleanField(required=False, initial=explicit == "")

    def rows(self) -> list[tuple[Any, Any, Any, Any]]:
        """(plan, folder info or None, destination field, skip field) per source folder."""
        return [
            (plan, self.infos.get(plan.source), self[f"dest_{i}"], self[f"skip_{i}"])
            for i, plan in enumerate(self.plans)
        ]

    def mapping(self) -> dict[str, str]:
        """Source name -> destination name ("" = skip) for the folders the operator set."""
        result: dict[str, str] = {}
        for index, plan in enumerate(self.plans):
            if self.cleaned_data[f"skip_{index}"]:
                result[plan.source] = ""
            elif name := self.cleaned_data[f"dest_{index}"].strip():
                result[plan.source] = name
        return result
