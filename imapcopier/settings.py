"""Settings for imapcopier. Every deploy-time value is an environment variable (README, "Configuration")."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from imapcopier.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    env_url,
    new_secret_key,
    secret_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("IMAPCOPIER_DATA_DIR") or BASE_DIR / "data").resolve()

DEBUG = env_bool("DEBUG", False)

_default_db = f"sqlite:///{DATA_DIR / 'imapcopier.sqlite3'}"
DATABASE_URL = env_url("DATABASE_URL", _default_db, schemes=("sqlite", "postgres", "postgresql"))
EMBEDDED = DATABASE_URL.startswith("sqlite")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not EMBEDDED and not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With a shared database every web and worker machine needs the same SECRET_KEY: set it in the environment."
        )
    SECRET_KEY = secret_file(DATA_DIR / "secret_key", new_secret_key)

IMAPCOPIER_FERNET_KEYS = env_list("IMAPCOPIER_FERNET_KEYS")
if not IMAPCOPIER_FERNET_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "IMAPCOPIER_FERNET_KEYS is not set: IMAP passwords are encrypted with it. "
            "For the installation bin/start made, run commands with `bin/manage <command>`: it loads "
            "the keys from data/secrets.env (a new key would not read the stored passwords). Otherwise "
            "set it to one or more Fernet keys, newest first, comma-separated "
            "(make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`), "
            "or set DEBUG=1 to have a development key generated into IMAPCOPIER_DATA_DIR."
        )
    IMAPCOPIER_FERNET_KEYS = [secret_file(DATA_DIR / "fernet.key", lambda: Fernet.generate_key().decode())]
else:
    from imapcopier.crypto import parse_keys

    parse_keys(IMAPCOPIER_FERNET_KEYS)  # fail at start-up, not at the first login

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"CSRF_TRUSTED_ORIGINS entries need a scheme (https://...); got {_origin!r}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "tasks",
    # Before django_q: runs' `qcluster` command (django-q2's, plus runs/lifeline.py) takes precedence.
    "runs",
    "django_q",
    "axes",
    "scheduling",
    "scheduling.notifications",
    "imapcopier.apitokens",
]

MIDDLEWARE = [
    # First: /healthz answers the container's local check before the host check and the HTTPS redirect.
    "imapcopier.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

# Repeated failed logins lock the user name out for a while (django-axes); counted in the database, so
# every web process sees the same count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

ROOT_URLCONF = "imapcopier.urls"
WSGI_APPLICATION = "imapcopier.wsgi.application"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


CONN_MAX_AGE_SECONDS = 60


def _database(url: str) -> dict:
    # Connections are kept for a minute on every database, SQLite included: a cluster's processes would
    # otherwise open a new one (with the PRAGMAs below) for each job and each poll of the ORM broker, which
    # django-q2 ends with close_old_connections() (bench/README.md, "SQLite connections kept between jobs").
    config = dj_database_url.parse(url, conn_max_age=CONN_MAX_AGE_SECONDS, conn_health_checks=True)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets the web, the cluster and its workers read while one writes; IMMEDIATE takes the
        # write lock at BEGIN so a read-then-write transaction waits instead of failing with SQLITE_BUSY.
        config["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
        }
        config["TEST"] = {"NAME": env_str("IMAPCOPIER_TEST_SQLITE") or str(DATA_DIR / "test.sqlite3")}
    return config


DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("IMAPCOPIER_MANIFEST_STATIC", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns at every start otherwise

# Behind a TLS-terminating proxy (README, "Production").
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

METRICS_TOKEN = env_str("METRICS_TOKEN")

REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"))
Q_WORKERS = env_int("Q_WORKERS", 4, minimum=1, maximum=256)

# django-q2, configured for long copy jobs (hours, where django-q2's defaults assume seconds): our Run rows
# are the truth, the broker only rings the bell. retry > timeout so a running copy is never handed out
# twice; failures are acknowledged and never retried by the broker; no replay of missed schedule slots
# after downtime. The job timeout is defined here once; runs.jobs.time_limit_seconds() reads it.
COPY_JOB_TIMEOUT_SECONDS = 6 * 3600
Q_CLUSTER = {
    # The site's name: queue names and Redis keys derive from it, and it salts the job signatures.
    # Two sites (or two test sessions) sharing one Redis need different names.
    "name": env_str("Q_NAME", "imapcopier"),
    "workers": Q_WORKERS,
    "timeout": COPY_JOB_TIMEOUT_SECONDS,
    "retry": COPY_JOB_TIMEOUT_SECONDS + 600,
    "ack_failures": True,
    "max_attempts": 1,
    "catch_up": False,
    "queue_limit": Q_WORKERS,
    "recycle": 50,
    # Our own rows (Run, AccountRun, test results) are the record of every copy job: django-q2 keeps no
    # successful results (with a limit it pruned them with a DELETE per job, 15% of a 200-account run's
    # cluster CPU in bench/many.py). Failed jobs are still kept (django-q2 always keeps those).
    "save_limit": -1,
    "poll": 0.5,
    "label": "Background jobs",
    # The scheduler tick runs in its own small cluster, so long copy jobs can never hold it up
    # (a cluster whose workers all copy would run the tick only when a copy ends):
    # `Q_CLUSTER_NAME=control manage.py qcluster`. Jobs must name their queue (runs.q2.enqueue
    # does), or a copy enqueued by the tick would land here.
    # The control cluster keeps its last 200 tick results: the admin's "Successful tasks" then shows when
    # each tick ran (one DELETE per tick to prune them, every 30 s, costs nothing).
    "ALT_CLUSTERS": {"control": {"workers": 1, "timeout": 300, "retry": 420, "queue_limit": 1, "save_limit": 200}},
}
Q_CONTROL_CLUSTER = "control"
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Notifications (scheduling/notifications/): e-mail through Django's e-mail backend, and an optional signed webhook.
# SMTP when EMAIL_HOST is set; otherwise mail is written to the log (console backend), which suits
# development and tells an operator in production that nothing is sent.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on: pick one.")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 20, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "imapcopier@localhost")
# The address pages are reached at, for links in notifications ("https://imapcopier.example.com").
SITE_URL = env_url("SITE_URL", "", schemes=("http", "https")).rstrip("/")
NOTIFY_WEBHOOK_URL = env_url("NOTIFY_WEBHOOK_URL", "", schemes=("http", "https"))
NOTIFY_WEBHOOK_SECRET = env_str("NOTIFY_WEBHOOK_SECRET")
if NOTIFY_WEBHOOK_URL and len(NOTIFY_WEBHOOK_SECRET) < 16:
    raise ImproperlyConfigured(
        "NOTIFY_WEBHOOK_SECRET must be set (16 characters or more) when NOTIFY_WEBHOOK_URL is: "
        "the receiver checks the X-Imapcopier-Signature header with it."
    )
NOTIFY_WEBHOOK_ATTEMPTS = env_int("NOTIFY_WEBHOOK_ATTEMPTS", 4, minimum=1, maximum=10)
# Waits between webhook attempts grow 1x, 4x, 16x... this base (so 2 s, 8 s, 32 s by default).
NOTIFY_WEBHOOK_BACKOFF_SECONDS = env_int("NOTIFY_WEBHOOK_BACKOFF_SECONDS", 2, minimum=0, maximum=60)
NOTIFY_WEBHOOK_TIMEOUT_SECONDS = env_int("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
# "text": key=value fields after the message; "json": one JSON object per line (imapcopier/logging.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json; got {LOG_FORMAT!r}")
# Error pages and reports hide sensitive variables and POST fields even with DEBUG on.
DEFAULT_EXCEPTION_REPORTER_FILTER = "imapcopier.errorreports.AlwaysSafeExceptionReporterFilter"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "imapcopier.logging.formatter", "log_format": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # imapclient's debug log carries message contents: keep it quiet unless asked for.
        "imapclient": {"level": "INFO"},
        "django_q": {"level": "INFO" if LOG_LEVEL != "DEBUG" else "DEBUG"},
    },
}
