"""Telltale settings, read only from environment variables (see .env.example).

Defaults give the embedded profile: SQLite under ``var/``, Celery tasks run in the
calling process. The production profile sets DATABASE_URL, CELERY_BROKER_URL and
SECRET_KEY (docker-compose.yml).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import plotly
from django.core.exceptions import ImproperlyConfigured

from webapp.env import (
    check_broker_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TELLTALE_VAR_DIR", str(BASE_DIR / "var")))
TESTING = "pytest" in sys.modules or env_bool("TELLTALE_TESTING", False)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
SECRET_KEY_FILE = Path(env_str("SECRET_KEY_FILE", str(VAR_DIR / "secret_key")))
if not SECRET_KEY and SECRET_KEY_FILE.is_file():
    # `make demo` writes a random key here once; production passes SECRET_KEY instead.
    SECRET_KEY = SECRET_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if DEBUG or TESTING:
        SECRET_KEY = "insecure-development-key-never-use-in-production-0123456789abcdef"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set SECRET_KEY, or SECRET_KEY_FILE to a"
            " file holding it (make demo writes one to var/secret_key)"
        )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "webapp.core",
    "webapp.telemetry",
    "webapp.detection",
    "webapp.mitigation",
    "webapp.alerting",
    "webapp.incidents",
    "webapp.dashboards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "webapp.core.middleware.RequestMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webapp.core.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.core.context.navigation",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'telltale.sqlite3'}")
DATABASES = {"default": parse_database_url("DATABASE_URL", DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3") and not TESTING:
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
# plotly.js ships inside the plotly wheel; serving it from there keeps pages CDN-free.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/plotly", Path(plotly.__file__).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MAX_AGE = 3600

# --- security: secure by default, HTTPS-specific switches configurable
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes and scrapers talk plain HTTP inside the network; ingest clients may too.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG and not TESTING)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG and not TESTING)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- email (alert notifications)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be true")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "telltale@localhost")
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")

# --- Celery: an empty broker URL runs tasks in the calling process
CELERY_BROKER_URL = check_broker_url("CELERY_BROKER_URL", env_str("CELERY_BROKER_URL"))
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {"visibility_timeout": 3600}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded demo's worker and beat share a queue folder instead of a broker service.
    queue_dir = VAR_DIR / "celery" / "queue"
    CELERY_BROKER_TRANSPORT = "workers.fstransport:Transport"  # atomic message files
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        # kombu otherwise writes broadcast (pidbox) exchanges to ./control in the working dir.
        "control_folder": str(VAR_DIR / "celery" / "control"),
        "store_processed": False,
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Training and the first models' backfills take minutes of CPU: their own queue and worker
# keep scoring and alerting live.
CELERY_TASK_ROUTES = {
    name: {"queue": "training"}
    for name in (
        "detection.train_model",
        "detection.backfill_anomalies",
        "detection.backfill_interference",
        "detection.calibrate_novelty",
    )
}

# --- Telltale
TELLTALE_RETENTION_DAYS = env_int("TELLTALE_RETENTION_DAYS", 15, minimum=1)
# How often the promoted models score the fleet. Rounds are aligned to the minute (a second
# round within one minute changes nothing), so a minute is the shortest useful period.
TELLTALE_ANOMALY_SCORING_SECONDS = env_int("TELLTALE_ANOMALY_SCORING_SECONDS", 60, minimum=60)
TELLTALE_INTERFERENCE_SECONDS = env_int("TELLTALE_INTERFERENCE_SECONDS", 60, minimum=60)
TELLTALE_ROLLUP_1M_RETENTION_DAYS = env_int("TELLTALE_ROLLUP_1M_RETENTION_DAYS", 90, minimum=1)
TELLTALE_ROLLUP_1H_RETENTION_DAYS = env_int("TELLTALE_ROLLUP_1H_RETENTION_DAYS", 400, minimum=1)
TELLTALE_INGEST_MAX_BODY_BYTES = env_int("TELLTALE_INGEST_MAX_BODY_BYTES", 16 << 20, minimum=1024)
TELLTALE_INGEST_MAX_AGE_SECONDS = env_int("TELLTALE_INGEST_MAX_AGE_SECONDS", 7 * 86400, minimum=60)
TELLTALE_INGEST_MAX_FUTURE_SECONDS = env_int("TELLTALE_INGEST_MAX_FUTURE_SECONDS", 600, minimum=0)
# Per-request ingest limits (docs/ingest.md, "Limits"): a request over one is answered 4xx
# naming the limit, never 5xx.
TELLTALE_INGEST_MAX_DECODED_BYTES = env_int(
    "TELLTALE_INGEST_MAX_DECODED_BYTES", 8 * TELLTALE_INGEST_MAX_BODY_BYTES, minimum=1024
)
TELLTALE_INGEST_MAX_SERIES_PER_REQUEST = env_int(
    "TELLTALE_INGEST_MAX_SERIES_PER_REQUEST", 100_000, minimum=1
)
TELLTALE_INGEST_MAX_SAMPLES_PER_REQUEST = env_int(
    "TELLTALE_INGEST_MAX_SAMPLES_PER_REQUEST", 2_000_000, minimum=1
)
TELLTALE_INGEST_MAX_LABELS_PER_SERIES = env_int(
    "TELLTALE_INGEST_MAX_LABELS_PER_SERIES", 64, minimum=2
)
TELLTALE_INGEST_MAX_LABEL_NAME_LENGTH = env_int(
    "TELLTALE_INGEST_MAX_LABEL_NAME_LENGTH", 256, minimum=16
)
TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH = env_int(
    "TELLTALE_INGEST_MAX_LABEL_VALUE_LENGTH", 4096, minimum=16
)
TELLTALE_INGEST_MAX_LOG_LINE_BYTES = env_int(
    "TELLTALE_INGEST_MAX_LOG_LINE_BYTES", 64 * 1024, minimum=256
)
TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST = env_int(
    "TELLTALE_INGEST_MAX_LOG_LINES_PER_REQUEST", 100_000, minimum=1
)
# Per-token quotas (ingest/quotas.py); 0 turns one off. A token's own values override these.
TELLTALE_INGEST_RATE_LIMIT = env_int("TELLTALE_INGEST_RATE_LIMIT", 500_000, minimum=0)
TELLTALE_INGEST_RATE_BURST = env_int(
    "TELLTALE_INGEST_RATE_BURST", 10 * TELLTALE_INGEST_RATE_LIMIT, minimum=0
)
TELLTALE_INGEST_MAX_NEW_SERIES = env_int("TELLTALE_INGEST_MAX_NEW_SERIES", 200_000, minimum=0)
TELLTALE_INGEST_NEW_SERIES_WINDOW_SECONDS = env_int(
    "TELLTALE_INGEST_NEW_SERIES_WINDOW_SECONDS", 3600, minimum=60
)
# The quotas live in Django's cache: Redis when several processes serve ingest (each
# process would otherwise count alone), process memory when one does (embedded profile).
TELLTALE_CACHE_URL = env_str("TELLTALE_CACHE_URL")
if TELLTALE_CACHE_URL and not TELLTALE_CACHE_URL.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("TELLTALE_CACHE_URL must be a redis:// or rediss:// URL, or empty")
_REDIS_CACHE = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": TELLTALE_CACHE_URL,
}
# Dashboard panels (webapp/dashboards/panelcache.py and {% panel %} blocks) must be shared
# by every web process, or one worker keeps showing a panel another has just invalidated:
# Redis when configured, otherwise files under var/ (all processes of one host see them).
_PANEL_CACHE = (
    _REDIS_CACHE
    if TELLTALE_CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "panels"}
    if TESTING
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "cache" / "panels"),
        "OPTIONS": {"MAX_ENTRIES": 2000},
    }
)
CACHES = {
    "default": (
        _REDIS_CACHE
        if TELLTALE_CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "telltale"}
    ),
    "panels": _PANEL_CACHE,
}
# Dashboard panels computed from telemetry are shared for this many seconds
# (webapp/dashboards/panelcache.py); 0 computes every request. Tests turn it on where they
# test it, so a page test sees the rows it has just written.
TELLTALE_PANEL_CACHE_SECONDS = env_int(
    "TELLTALE_PANEL_CACHE_SECONDS", 0 if TESTING else 10, minimum=0
)
# Login lockouts (webapp/core/throttle.py): failures per user name / per client address.
TELLTALE_LOGIN_MAX_FAILURES = env_int("TELLTALE_LOGIN_MAX_FAILURES", 5, minimum=1)
TELLTALE_LOGIN_MAX_FAILURES_PER_IP = env_int("TELLTALE_LOGIN_MAX_FAILURES_PER_IP", 30, minimum=1)
TELLTALE_LOGIN_WINDOW_SECONDS = env_int("TELLTALE_LOGIN_WINDOW_SECONDS", 900, minimum=1)
TELLTALE_LOGIN_LOCKOUT_SECONDS = env_int("TELLTALE_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
TELLTALE_METRICS_PUBLIC = env_bool("TELLTALE_METRICS_PUBLIC", False)
TELLTALE_ALERTING_RETRY_BASE_SECONDS = env_int(
    "TELLTALE_ALERTING_RETRY_BASE_SECONDS", 10, minimum=1
)
TELLTALE_ALERTING_NOTIFICATION_TTL = env_int(
    "TELLTALE_ALERTING_NOTIFICATION_TTL", 24 * 3600, minimum=60
)
TELLTALE_BOOTSTRAP_TRAINING = env_choice(
    "TELLTALE_BOOTSTRAP_TRAINING", "full", ("full", "demo", "quick", "off")
)
TELLTALE_SCRAPE_DEFAULT_INTERVAL = env_int("TELLTALE_SCRAPE_DEFAULT_INTERVAL", 15, minimum=1)
# Hours before its promotion that the first anomaly and interference versions score after
# the fact (0: none).
TELLTALE_BACKFILL_HOURS = env_int("TELLTALE_BACKFILL_HOURS", 24, minimum=0)
# Novelty alarms (docs/anomaly.md, "Novelty"): the promoted anomaly model also alarms where
# a target's forecast error is this unusual (calibrated 0-100 on the fleet's own windows of
# the last TELLTALE_NOVELTY_HOURS, refitted every TELLTALE_NOVELTY_REFIT_HOURS); 0 turns
# novelty alarms off (the novelty score is still charted).
TELLTALE_NOVELTY_LEVEL = env_int("TELLTALE_NOVELTY_LEVEL", 95, minimum=0)
TELLTALE_NOVELTY_HOURS = env_int("TELLTALE_NOVELTY_HOURS", 24, minimum=1)
TELLTALE_NOVELTY_REFIT_HOURS = env_int("TELLTALE_NOVELTY_REFIT_HOURS", 6, minimum=1)
# Hours of simulated history `manage.py demo` writes into an empty store on its first start.
TELLTALE_DEMO_HISTORY_HOURS = env_int("TELLTALE_DEMO_HISTORY_HOURS", 6, minimum=1)

DATA_UPLOAD_MAX_MEMORY_SIZE = TELLTALE_INGEST_MAX_BODY_BYTES

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

if TESTING:
    # The same suite runs on SQLite + eager Celery, or PostgreSQL + Redis when these are set.
    test_db = env_str("TELLTALE_TEST_DATABASE_URL")
    if test_db:
        DATABASES = {"default": parse_database_url("TELLTALE_TEST_DATABASE_URL", test_db)}
    elif not os.environ.get("DATABASE_URL"):
        # A file, not :memory:, so the live server and worker threads get their own
        # connections instead of sharing the test thread's.
        DATABASES = {
            "default": parse_database_url("DATABASE_URL", f"sqlite:///{VAR_DIR}/dev.sqlite3")
        }
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Per-process test database names let several test runs share a machine.
    if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
    else:
        DATABASES["default"]["TEST"] = {
            "NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
        }
    test_broker = check_broker_url("TELLTALE_TEST_BROKER_URL", env_str("TELLTALE_TEST_BROKER_URL"))
    CELERY_BROKER_URL = test_broker
    CELERY_TASK_ALWAYS_EAGER = not test_broker
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
