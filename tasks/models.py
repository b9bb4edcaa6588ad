from __future__ import annotations

import ipaddress
import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator, validate_email
from django.db import models
from django.db.models import Q

from tasks.fields import EncryptedTextField


class ScheduleInterval(models.IntegerChoices):
    """The six schedule presets, in seconds (0 = off)."""

    OFF = 0, "Off"
    HOUR_1 = 3600, "Every 1h"
    HOURS_3 = 10800, "Every 3h"
    HOURS_6 = 21600, "Every 6h"
    HOURS_12 = 43200, "Every 12h"
    HOURS_24 = 86400, "Every 24h"


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def host_problem(host: str) -> str:
    """Why `host` is not a bare IMAP server name or address, or "" when it is one.

    Accepted: a DNS name (RFC 1123 labels; an internationalised name is checked in its IDNA form), an
    IPv4 address or an IPv6 address without brackets. Refused: a port (it has its own field), a URL,
    spaces, CR/LF or other control characters, which would otherwise fail only at the connection test.
    """
    if not host:
        return "Enter the server's host name or address."
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in host):
        return "The host name cannot contain spaces, line breaks or control characters."
    if "://" in host or "/" in host or "@" in host:
        return "Enter only the server's host name (e.g. imap.example.com), not a URL."
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    if host.startswith("[") or host.count(":") > 1:
        return "Enter an IPv6 address without brackets or port, e.g. 2001:db8::1."
    if ":" in host:
        return "Enter the port in the Port field, not after the host name."
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "This is not a valid host name."
    name = ascii_name[:-1] if ascii_name.endswith(".") else ascii_name
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        return "This is not a valid host name: letters, digits, hyphens and dots only."
    return ""


# Where Microsoft and Google issue tokens, and the scopes IMAP needs there (Microsoft: "Authenticate an
# IMAP connection using OAuth"; Google: "OAuth 2.0 scopes for Google APIs", Gmail IMAP).
MICROSOFT_AUTHORITY_URL = "https://login.microsoftonline.com"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
MICROSOFT_USER_SCOPE = "https://outlook.office365.com/IMAP.AccessAsUser.All offline_access"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"


class Endpoint(models.Model):
    """One IMAP server, used as the source or the destination of tasks."""

    class Security(models.TextChoices):
        SSL = "ssl", "SSL/TLS (implicit, port 993)"
        STARTTLS = "starttls", "STARTTLS (port 143)"
        PLAIN = "plain", "None (plain text)"

    class AuthMethod(models.TextChoices):
        PASSWORD = "password", "Password (each account's own)"
        MICROSOFT_APP = "oauth_microsoft", "OAuth 2.0: Microsoft 365 application access (client credentials)"
        GOOGLE_SERVICE_ACCOUNT = "oauth_google", "OAuth 2.0: Google Workspace service account (domain-wide delegation)"
        USER_CONSENT = "oauth_consent", "OAuth 2.0: each user's consent (a link per account)"

    label = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=993, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    security = models.CharField(max_length=10, choices=Security.choices, default=Security.SSL)
    verify_tls = models.BooleanField("verify TLS certificate", default=True)
    ca_certificate = models.TextField(
        "custom CA certificate (PEM)",
        blank=True,
        help_text="Trust this CA instead of the system store, for a private CA.",
    )
    max_connections = models.PositiveSmallIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Connections imapcopier opens to this server at once, all tasks and tests together.",
    )
    auth_method = models.CharField("sign-in", max_length=20, choices=AuthMethod.choices, default=AuthMethod.PASSWORD)
    oauth_tenant = models.CharField(
        "tenant", max_length=255, blank=True, help_text="Microsoft: the directory (tenant) ID or domain."
    )
    oauth_client_id = models.CharField(
        "client ID", max_length=255, blank=True, help_text="The application (client) ID of the app registration."
    )
    oauth_client_secret = EncryptedTextField("client secret", blank=True)
    oauth_client_certificate = EncryptedTextField("client certificate and private key (PEM)", blank=True)
    oauth_service_account_key = EncryptedTextField("service account key (JSON)", blank=True)
    oauth_authority_url = models.URLField(
        "Microsoft sign-in address",
        blank=True,
        default=MICROSOFT_AUTHORITY_URL,
        help_text="The tenant is added to it. Change it only for a national cloud.",
    )
    oauth_token_url = models.URLField(
        "token endpoint",
        blank=True,
        help_text=f"Empty: Google's ({GOOGLE_TOKEN_URL}) for a service account; for each user's consent, "
        "Microsoft's for the tenant.",
    )
    oauth_authorize_url = models.URLField(
        "authorization endpoint",
        blank=True,
        help_text="Each user's consent only. Empty: Microsoft's for the tenant; "
        "Google: https://accounts.google.com/o/oauth2/v2/auth.",
    )
    oauth_scope = models.CharField(
        "scope",
        max_length=500,
        blank=True,
        help_text="Empty: what IMAP needs (Microsoft application: .default; Google: https://mail.google.com/; "
        "Microsoft user: IMAP.AccessAsUser.All offline_access).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["label"]
        constraints = [
            models.CheckConstraint(condition=Q(port__gte=1, port__lte=65535), name="endpoint_port_range"),
            models.CheckConstraint(
                condition=Q(security__in=["ssl", "starttls", "plain"]),
                name="endpoint_security_valid",
            ),
            models.CheckConstraint(
                condition=Q(max_connections__gte=1),
                name="endpoint_max_connections_positive",
            ),
            models.CheckConstraint(
                condition=Q(auth_method__in=["password", "oauth_microsoft", "oauth_google", "oauth_consent"]),
                name="endpoint_auth_method_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.host}:{self.port})"

    def clean(self) -> None:
        """Run by every model form (the endpoint form, the admin): the host must be a bare host name;
        an OAuth 2.0 sign-in needs the settings of its kind (oauth_problems)."""
        super().clean()
        problems = dict(self.oauth_problems())
        problem = host_problem(self.host)
        if problem:
            problems["host"] = problem
        if problems:
            raise ValidationError(problems)

    @property
    def sign_in_label(self) -> str:
        """The sign-in method in a few words, for lists (the choice's label is the long form)."""
        return {
            self.AuthMethod.PASSWORD: "Password",
            self.AuthMethod.MICROSOFT_APP: "OAuth 2.0: Microsoft 365 application",
            self.AuthMethod.GOOGLE_SERVICE_ACCOUNT: "OAuth 2.0: Google service account",
            self.AuthMethod.USER_CONSENT: "OAuth 2.0: each user's consent",
        }.get(self.auth_method, self.auth_method)

    @property
    def uses_oauth(self) -> bool:
        """Accounts of this endpoint sign in with an OAuth 2.0 token rather than a password."""
        return self.auth_method != self.AuthMethod.PASSWORD

    @property
    def needs_consent(self) -> bool:
        """Each account of this endpoint needs its user's consent (a stored refresh token)."""
        return self.auth_method == self.AuthMethod.USER_CONSENT

    def oauth_problems(self) -> list[tuple[str, str]]:
        """(field, message) for each setting the chosen sign-in lacks; [] when complete."""
        method = self.AuthMethod
        needed: list[tuple[str, str]] = []
        if self.auth_method == method.MICROSOFT_APP:
            needed = [("oauth_tenant", "the tenant"), ("oauth_client_id", "the client ID")]
            if not self.oauth_client_certificate:
                needed.append(("oauth_client_secret", "the client secret (or a certificate)"))
        elif self.auth_method == method.GOOGLE_SERVICE_ACCOUNT:
            needed = [("oauth_service_account_key", "the service account key")]
        elif self.auth_method == method.USER_CONSENT:
            needed = [("oauth_client_id", "the client ID")]
            if not (self.oauth_authorize_url and self.oauth_token_url):
                needed.append(("oauth_tenant", "the tenant (or both endpoints)"))
        return [(name, f"This sign-in needs {what}.") for name, what in needed if not getattr(self, name)]

    @property
    def microsoft_authority(self) -> str:
        """MSAL's authority: the sign-in address and the tenant (https://login.microsoftonline.com/<tenant>)."""
        return f"{(self.oauth_authority_url or MICROSOFT_AUTHORITY_URL).rstrip('/')}/{self.oauth_tenant}"

    @property
    def token_url(self) -> str:
        """The token endpoint of a service account or of users' consent: the setting, else the default."""
        if self.oauth_token_url:
            return self.oauth_token_url
        if self.auth_method == self.AuthMethod.GOOGLE_SERVICE_ACCOUNT:
            return GOOGLE_TOKEN_URL
        return f"{self.microsoft_authority}/oauth2/v2.0/token"

    @property
    def authorize_url(self) -> str:
        """Where a user consents (each user's consent): the setting, else Microsoft's for the tenant."""
        return self.oauth_authorize_url or f"{self.microsoft_authority}/oauth2/v2.0/authorize"

    @property
    def scope(self) -> str:
        """The scope asked for: the setting, else what IMAP needs for this sign-in."""
        if self.oauth_scope:
            return self.oauth_scope
        return {
            self.AuthMethod.MICROSOFT_APP: MICROSOFT_APP_SCOPE,
            self.AuthMethod.GOOGLE_SERVICE_ACCOUNT: GOOGLE_SCOPE,
        }.get(self.auth_method, MICROSOFT_USER_SCOPE)


# A webhook secret shorter than this is refused, for a task's webhook as for the site's
# (NOTIFY_WEBHOOK_SECRET, checked in imapcopier/settings.py, which cannot import models).
WEBHOOK_SECRET_MIN_CHARS = 16


def parse_recipients(raw: str) -> list[str]:
    """The addresses of a recipients field: separated by commas, semicolons, spaces or new lines.

    Raises django.core.exceptions.ValidationError naming the first address that is not one.
    """
    addresses = [part for part in re.split(r"[\s,;]+", raw or "") if part]
    for address in addresses:
        validate_email(address)
    return list(dict.fromkeys(addresses))


class TaskQuerySet(models.QuerySet):
    def schedule_on(self) -> TaskQuerySet:
        """Tasks whose schedule is on: an interval chosen and the breaker not tripped (Task.schedule_on)."""
        return self.filter(schedule_interval_seconds__gt=0, broken=False)

    def schedulable(self) -> TaskQuerySet:
        """Tasks that may start by themselves: schedule on and not running."""
        return self.schedule_on().exclude(status=Task.Status.RUNNING)

    def using_endpoint(self, endpoint: Endpoint) -> TaskQuerySet:
        """Tasks that copy from or to `endpoint`."""
        return self.filter(Q(source=endpoint) | Q(destination=endpoint))


class Task(models.Model):
    """A migration: a source and a destination server and the account pairs to copy between them."""

    class Status(models.TextChoices):
        IDLE = "idle", "Idle"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=200, unique=True)
    source = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="source_tasks")
    destination = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="destination_tasks")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    folder_mapping = models.JSONField(
        default=dict,
        blank=True,
        help_text="Source folder name -> destination folder name; an empty name skips the folder.",
    )
    schedule_interval_seconds = models.PositiveIntegerField(
        choices=ScheduleInterval.choices, default=ScheduleInterval.OFF
    )
    schedule_anchor = models.DateTimeField(null=True, blank=True)
    broken = models.BooleanField(default=False)
    notify_emails = models.TextField(
        "notify by e-mail",
        blank=True,
        help_text="Addresses told when a run fails or ends with errors, the schedule breaks or waits "
        "(separated by commas or new lines).",
    )
    notify_webhook_url = models.URLField(
        "notify by webhook",
        max_length=2000,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Also POST each notification as signed JSON to this address, in addition to the site's "
        "webhook (NOTIFY_WEBHOOK_URL).",
    )
    notify_webhook_secret = EncryptedTextField(
        "webhook secret",
        blank=True,
        help_text="Signs this task's webhook (X-Imapcopier-Signature: sha256=HMAC-SHA256 of the body). "
        "Encrypted at rest; never shown again once saved.",
    )
    schedule_waiting_accounts = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Set by the scheduler tick while the schedule is on but cannot start: how many accounts need "
        "a connection test (0: the task has no accounts). None when not waiting. Kept so each change is logged once.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(schedule_interval_seconds__in=[c.value for c in ScheduleInterval]),
                name="task_schedule_interval_preset",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["idle", "running", "done", "failed", "cancelled"]),
                name="task_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def schedule_on(self) -> bool:
        """The schedule is on: an interval chosen and the breaker not tripped (TaskQuerySet.schedule_on)."""
        return self.schedule_interval_seconds > 0 and not self.broken


class AccountQuerySet(models.QuerySet):
    def active(self) -> AccountQuerySet:
        """Accounts not parked: the ones runs copy, tests test and the gates count (issue 12)."""
        return self.filter(paused=False)

    def parked(self) -> AccountQuerySet:
        """Accounts an operator has paused, with a reason: skipped by runs, tests and gates."""
        return self.filter(paused=True)

    def tested_ok(self) -> AccountQuerySet:
        """Accounts whose last connection test passed on both sides: the only ones a run or a schedule accepts."""
        return self.filter(**Account.TESTED_OK)

    def blocking(self) -> AccountQuerySet:
        """Accounts that keep their task from running and its schedule from starting: active (not parked)
        and not tested OK on both sides (untested, or failed on either side). "Test untested and failed" tests these."""
        return self.active().exclude(**Account.TESTED_OK)

    def failed(self) -> AccountQuerySet:
        """Accounts whose last test failed on at least one side."""
        return self.filter(_failed())

    def test_counts(self) -> dict[str, int]:
        """In one query: `total`, `active` and `parked` accounts; of the active ones, `ok` (as tested_ok())
        and `failed` (as failed())."""
        active = Q(paused=False)
        return self.aggregate(
            total=models.Count("pk"),
            active=models.Count("pk", filter=active),
            parked=models.Count("pk", filter=~active),
            ok=models.Count("pk", filter=active & Q(**Account.TESTED_OK)),
            failed=models.Count("pk", filter=active & _failed()),
        )

    def with_test_state(self, state: str) -> AccountQuerySet:
        """Filter by the combined test state of both sides (TEST_STATES): "ok" both OK, "failed" either
        side failed, "untested" neither failed and at least one side untested. Raises ValueError otherwise."""
        untested = Account.TestStatus.UNTESTED
        if state == "ok":
            return self.tested_ok()
        if state == "failed":
            return self.failed()
        if state == "untested":
            return self.exclude(_failed()).filter(Q(source_test_status=untested) | Q(destination_test_status=untested))
        raise ValueError(f"unknown test state {state!r}")


def _failed() -> Q:
    return Q(source_test_status=Account.TestStatus.FAIL) | Q(destination_test_status=Account.TestStatus.FAIL)


TEST_STATES = {"ok": "Tested OK", "failed": "Test failed", "untested": "Not tested"}


class Account(models.Model):
    """One mailbox pair of a task: a source login and the destination login it is copied to."""

    class TestStatus(models.TextChoices):
        UNTESTED = "untested", "Untested"
        OK = "ok", "OK"
        FAIL = "fail", "Failed"

    # Tested OK on both sides, the rule behind tested_ok() and blocking().
    TESTED_OK = {"source_test_status": TestStatus.OK, "destination_test_status": TestStatus.OK}

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="accounts")
    source_user = models.CharField(max_length=255)
    source_password = EncryptedTextField(blank=True)  # empty when the source signs in with OAuth 2.0
    destination_user = models.CharField(max_length=255)
    destination_password = EncryptedTextField(blank=True)
    # Each user's consent (Endpoint.AuthMethod.USER_CONSENT): the refresh token the user's consent gave.
    source_refresh_token = EncryptedTextField(blank=True)
    destination_refresh_token = EncryptedTextField(blank=True)
    # How many consents were stored for the side: a consent link carries the count it was made at
    # and is used up once a consent is stored through it (tasks/oauth.py consent_account).
    source_consents = models.PositiveIntegerField(default=0)
    destination_consents = models.PositiveIntegerField(default=0)
    source_test_status = models.CharField(max_length=10, choices=TestStatus.choices, default=TestStatus.UNTESTED)
    source_test_message = models.TextField(blank=True)
    source_tested_at = models.DateTimeField(null=True, blank=True)
    destination_test_status = models.CharField(max_length=10, choices=TestStatus.choices, default=TestStatus.UNTESTED)
    destination_test_message = models.TextField(blank=True)
    destination_tested_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(
        default=False, help_text="Parked: skipped by runs, connection tests and the run and schedule gates."
    )
    paused_reason = models.CharField(max_length=500, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AccountQuerySet.as_manager()

    class Meta:
        ordering = ["source_user"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "source_user"],
                name="account_unique_source_user_per_task",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_user} -> {self.destination_user}"

    @property
    def tested_ok(self) -> bool:
        """This account's last test passed on both sides (AccountQuerySet.tested_ok, for one row in memory)."""
        return all(getattr(self, name) == value for name, value in self.TESTED_OK.items())


class ConnectionSlot(models.Model):
    """One of an endpoint's `max_connections`, leased by a copy job or a connection test.

    A free slot has an empty holder or an expired lease: a killed worker's slots free themselves.
    """

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="connection_slots")
    number = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table was created by the runs app, where the model lived first; the slots moved here so the
        # connection tests (this app) can take them without importing runs.
        db_table = "runs_connectionslot"
        ordering = ["endpoint", "number"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "number"], name="connection_slot_unique")]
        indexes = [models.Index(fields=["holder"], name="connection_slot_holder")]

    def __str__(self) -> str:
        return f"slot {self.number} of endpoint {self.endpoint_id}"
