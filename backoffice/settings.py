"""Claimdesk settings.

Every value that differs between a laptop and production comes from the environment (or a local
``.env`` file, never committed); the README's settings table lists them all. Defaults are safe:
``DEBUG`` is off, and with ``DEBUG`` off the secrets must be set explicitly.
"""

from pathlib import Path

import environ

from backoffice.safety import require_fallback_keys, require_secrets

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The env file deploy/run writes its development settings to, so that every manage.py in the clone
# runs like the product; the environment wins over it. Empty: no file (the test suite).
ENV_FILE = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

# A development key only exists while DEBUG is on; production must provide its own.
SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else "")
# Previous keys, still accepted for signatures while sessions and tokens move to the new key.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "knox",
    "django_q",
    "audit",
    "claims",
    "automation",
    "telegram_bridge",
    "api",
    "callbacks",
    "mcp_server",
    "monitoring",
    "backoffice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from the web process, compressed and cached forever under hashed
    # names: the admin and the API docs work behind gunicorn with no separate file server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "backoffice" / "templates"],
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

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'claimdesk.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for each other instead of failing at once with "database is locked".
    # WAL lets the web process read while a worker writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so worker processes started by tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
# PostgreSQL: parameters travel apart from the SQL and a statement run often on a connection is
# prepared once, so the server parses and plans it once instead of on every request. Turn this off
# behind a pooler that cannot keep prepared statements (PgBouncer in transaction mode).
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DATABASE_PREPARED_STATEMENTS", default=True
):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": 5}
    )
# Each process keeps its connection for this many seconds instead of opening one per request.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Permissions are looked up once and kept in the cache; see backoffice.permission_cache.
AUTHENTICATION_BACKENDS = ["backoffice.permission_cache.CachedPermissionBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
FORMAT_MODULE_PATH = ["backoffice.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# manage.py collectstatic writes each file under a hashed name, gzip-compressed beside it.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- Claims and approvals -------------------------------------------------------------------
CLAIM_DEFAULT_TTL = env.int("CLAIM_DEFAULT_TTL", default=300)
CLAIM_MAX_TTL = env.int("CLAIM_MAX_TTL", default=86400)
APPROVAL_EXPIRY = env.int("APPROVAL_EXPIRY", default=7 * 24 * 3600)
APPROVAL_FORBID_SELF_APPROVAL = env.bool("APPROVAL_FORBID_SELF_APPROVAL", default=False)
# The user manage.py claim, refresh, release and approvals request act as without --user
# (e.g. a "ci" service user); empty: --user is required for every write.
CLI_SERVICE_USER = env.str("CLI_SERVICE_USER", default="")

# --- Audit trail ----------------------------------------------------------------------------
# Key of the audit hash chain and its checkpoints' signatures (audit/chain.py): a secret kept
# apart from the database, so whoever can write the database cannot recompute the chain. Changing
# it makes every earlier event fail audit_verify; see docs/audit.md.
AUDIT_HMAC_KEY = env.str("AUDIT_HMAC_KEY", default="dev-only-insecure-key" if DEBUG else "")
# Append-only file every checkpoint is added to, one JSON line each; empty: none.
AUDIT_CHECKPOINT_FILE = env.str("AUDIT_CHECKPOINT_FILE", default="")

# --- Task queue (django-q2) -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
# Jobs of the automation runner go to a queue of their own, "<name>-jobs", served only by a cluster
# started as Q_CLUSTER_NAME=<name>-jobs manage.py qcluster (django-q2's ALT_CLUSTERS): the site
# name, which signs the queued tasks, stays <name> in both clusters.
JOBS_QUEUE_SUFFIX = "-jobs"
Q_SITE_NAME = env.str("Q_CLUSTER_NAME", default="claimdesk").removesuffix(JOBS_QUEUE_SUFFIX)
AUTOMATION_QUEUE = Q_SITE_NAME + JOBS_QUEUE_SUFFIX
# Steps are bounded by their own timeouts; the runner cluster only cuts a job after 12 hours (the
# sweep then resumes it). A task it loses is found again by the sweep; a second copy is harmless.
AUTOMATION_MAX_CONCURRENT_JOBS = env.int("AUTOMATION_MAX_CONCURRENT_JOBS", default=2)
Q_CLUSTER = {
    "name": Q_SITE_NAME,
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 1,
    "catch_up": False,
    "ack_failures": True,
    "poll": 0.2,
    "label": "Task queue",
    "ALT_CLUSTERS": {
        AUTOMATION_QUEUE: {
            "workers": AUTOMATION_MAX_CONCURRENT_JOBS,
            "timeout": 12 * 3600,
            "retry": 13 * 3600,
        },
    },
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Automation runner (automation/) --------------------------------------------------------
# Steps really run only when this is on AND the job was submitted live; otherwise a dry run.
AUTOMATION_ALLOW_EXECUTION = env.bool("AUTOMATION_ALLOW_EXECUTION", default=False)
# Executables a step may start, by name (looked up on AUTOMATION_PATH) or by absolute path.
AUTOMATION_COMMAND_ALLOWLIST = env.list(
    "AUTOMATION_COMMAND_ALLOWLIST", default=["echo", "printf", "true", "false", "date", "uname"]
)
# The PATH of every step (names on the allowlist are looked up here), never the worker's own.
AUTOMATION_PATH = env.str("AUTOMATION_PATH", default="/usr/local/bin:/usr/bin:/bin")
# Bytes of stdout and of stderr kept per step; the rest is cut and marked.
AUTOMATION_OUTPUT_LIMIT = env.int("AUTOMATION_OUTPUT_LIMIT", default=65536)
# Each job runs in a temporary directory of its own under this one.
AUTOMATION_WORK_ROOT = Path(env.str("AUTOMATION_WORK_ROOT", default=str(VAR_DIR / "jobs")))
# The lease a job holds on its work item: its length; it is refreshed at a third of it.
AUTOMATION_LEASE_TTL = env.int("AUTOMATION_LEASE_TTL", default=60)
# A running job whose worker has not said it is alive for this long is resumed by the sweep.
AUTOMATION_HEARTBEAT_TIMEOUT = env.float("AUTOMATION_HEARTBEAT_TIMEOUT", default=60.0)
# Backoff between the retries of a failed step: base * 2**(attempt-1) seconds, at most the max.
AUTOMATION_RETRY_BACKOFF = env.float("AUTOMATION_RETRY_BACKOFF", default=1.0)
AUTOMATION_RETRY_BACKOFF_MAX = env.float("AUTOMATION_RETRY_BACKOFF_MAX", default=30.0)

# --- Telegram -------------------------------------------------------------------------------
# The bot token is a secret (it sits in every Bot API URL): environment only, never logged.
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
# Point this at the fake Bot API (manage.py telegram_fake_server) to run without Telegram.
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org")
# Bot API client (telegram_bridge.client): seconds to connect and to wait for an answer, and the
# urllib3 retries of connection errors and 5xx answers (exponential backoff with jitter).
TELEGRAM_CONNECT_TIMEOUT = env.float("TELEGRAM_CONNECT_TIMEOUT", default=5.0)
TELEGRAM_READ_TIMEOUT = env.float("TELEGRAM_READ_TIMEOUT", default=15.0)
TELEGRAM_RETRY_TOTAL = env.int("TELEGRAM_RETRY_TOTAL", default=3)
TELEGRAM_RETRY_BACKOFF = env.float("TELEGRAM_RETRY_BACKOFF", default=0.5)
TELEGRAM_RETRY_BACKOFF_MAX = env.float("TELEGRAM_RETRY_BACKOFF_MAX", default=10.0)
# Send rate shared by every worker (telegram_bridge.ratelimit), kept under Telegram's flood limits.
TELEGRAM_RATE_GLOBAL_PER_SECOND = env.float("TELEGRAM_RATE_GLOBAL_PER_SECOND", default=30.0)
TELEGRAM_RATE_CHAT_PER_SECOND = env.float("TELEGRAM_RATE_CHAT_PER_SECOND", default=1.0)
TELEGRAM_RATE_GROUP_PER_MINUTE = env.float("TELEGRAM_RATE_GROUP_PER_MINUTE", default=20.0)
# Prefix of the limiter's Redis keys (used when REDIS_URL is set); one per deployment.
TELEGRAM_RATE_REDIS_PREFIX = env.str("TELEGRAM_RATE_REDIS_PREFIX", default="claimdesk:tg-rate")
# Outbox delivery (telegram_bridge.outbox): retries, dead letters and automatic requeue.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=5)
OUTBOX_BACKOFF_BASE = env.float("OUTBOX_BACKOFF_BASE", default=2.0)
OUTBOX_BACKOFF_MAX = env.float("OUTBOX_BACKOFF_MAX", default=300.0)
# A worker waits in-process this long at most (rate-limit slot, short retry) before it hands the
# message back to the sweep and the scheduler; keep it well under Q_CLUSTER["timeout"].
OUTBOX_INLINE_WAIT_MAX = env.float("OUTBOX_INLINE_WAIT_MAX", default=10.0)
# A row left in "sending" longer than this belonged to a worker that died mid-send.
OUTBOX_SENDING_LEASE = env.int("OUTBOX_SENDING_LEASE", default=180)
# The sweep's bulk drain: how long one run goes on, and how many rows it takes at a time.
OUTBOX_DRAIN_SECONDS = env.float("OUTBOX_DRAIN_SECONDS", default=50.0)
OUTBOX_DRAIN_BATCH = env.int("OUTBOX_DRAIN_BATCH", default=10)
# After its own message, a delivery task drains any backlog for at most this long.
OUTBOX_TASK_DRAIN_SECONDS = env.float("OUTBOX_TASK_DRAIN_SECONDS", default=10.0)
OUTBOX_REQUEUE_MAX = env.int("OUTBOX_REQUEUE_MAX", default=3)
OUTBOX_REQUEUE_WINDOW_HOURS = env.int("OUTBOX_REQUEUE_WINDOW_HOURS", default=72)
OUTBOX_REQUEUE_BATCH = env.int("OUTBOX_REQUEUE_BATCH", default=10)
# Decision callbacks (callbacks/): the hosts a callback_url may name (Django ALLOWED_HOSTS
# patterns; empty: no callbacks), and how long one POST may take. Retries: the OUTBOX_* above.
CALLBACK_ALLOWED_HOSTS = env.list("CALLBACK_ALLOWED_HOSTS", default=[])
CALLBACK_TIMEOUT = env.float("CALLBACK_TIMEOUT", default=10.0)
# Inbound updates (telegram_bridge.views, telegram_bridge.polling). The webhook answers 404 while
# the secret is unset; Telegram echoes it in X-Telegram-Bot-Api-Secret-Token (1-256 of A-Za-z0-9_-).
TELEGRAM_WEBHOOK_SECRET = env.str("TELEGRAM_WEBHOOK_SECRET", default="")
TELEGRAM_WEBHOOK_MAX_BYTES = env.int("TELEGRAM_WEBHOOK_MAX_BYTES", default=1024 * 1024)
# Where approval requests are posted (a group, a channel or one person); unset = no messages.
TELEGRAM_APPROVER_CHAT_ID = env.int("TELEGRAM_APPROVER_CHAT_ID", default=None)
# Channel the audit trail's checkpoints are published to; unset = not published on Telegram.
TELEGRAM_AUDIT_CHANNEL_ID = env.int("TELEGRAM_AUDIT_CHANNEL_ID", default=None)
# manage.py telegram_poll: seconds one getUpdates call waits for news, and how long the lease of
# the single poller lasts unrenewed (a crashed poller blocks a new one for at most this long).
TELEGRAM_POLL_TIMEOUT = env.int("TELEGRAM_POLL_TIMEOUT", default=25)
TELEGRAM_POLL_LIMIT = env.int("TELEGRAM_POLL_LIMIT", default=100)
TELEGRAM_POLL_LEASE = env.int("TELEGRAM_POLL_LEASE", default=60)
# Seconds from the start of a getUpdates call that came back empty to the next call.
TELEGRAM_POLL_EMPTY_INTERVAL = env.float("TELEGRAM_POLL_EMPTY_INTERVAL", default=1.0)

# --- REST API -------------------------------------------------------------------------------
# Requests each API user (token) may make per period, e.g. "1000/min", "20/s"; more get a 429.
API_THROTTLE_RATE = env.str("API_THROTTLE_RATE", default="6000/min")
# Seconds an Idempotency-Key and its stored answer are kept; after that the key is free again.
API_IDEMPOTENCY_TTL = env.int("API_IDEMPOTENCY_TTL", default=24 * 3600)
# Lifetime of a new API token when its creator does not choose one (admin, create_api_token).
API_TOKEN_EXPIRY_HOURS = env.int("API_TOKEN_EXPIRY_HOURS", default=30 * 24)
REST_FRAMEWORK = {
    # Token first, so an unauthenticated request is answered 401 with WWW-Authenticate: Token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # One timestamp format everywhere: ISO 8601 in UTC with a Z (backoffice.timestamps).
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Claimdesk API",
    "DESCRIPTION": "Claim work items, ask for approval and read the audit trail. See docs/api.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # Operation ids and tags without the version: "claims_create", not "v1_claims_create".
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc assets come from drf-spectacular-sidecar: served locally, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ApprovalStatusEnum": "claims.models.ApprovalRequest.Status",
        "DecisionSourceEnum": "claims.models.ApprovalRequest.DecisionSource",
        "OutboxStatusEnum": "telegram_bridge.models.OutboundMessage.Status",
        "JobStatusEnum": "automation.models.Job.Status",
        "JobStepStatusEnum": "automation.models.JobStep.Status",
    },
    # The default enum hook, then OpenAPI links between operations (see api.schema.LINKS).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.add_links",
    ],
}
# The throttle's counters must be shared by every gunicorn worker: Redis when REDIS_URL is set,
# else a database table that migrate creates (see api.apps). The prefix keeps deployments (and
# parallel test runs) sharing one Redis apart.
CACHE_KEY_PREFIX = env.str("CACHE_KEY_PREFIX", default=Q_CLUSTER["name"])
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "backoffice.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "claimdesk_cache",
            "KEY_PREFIX": CACHE_KEY_PREFIX,
        }
    }

# --- Monitoring (monitoring/; docs/monitoring.md) ---------------------------------------------
# GET /metrics is open to staff sessions and to this bearer token (empty: staff only).
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
# Where alerts and their "resolved" messages go (a group or one person); unset: none are sent.
TELEGRAM_NOTIFY_CHAT_ID = env.int("TELEGRAM_NOTIFY_CHAT_ID", default=None)
# A rule that fired stays quiet this long: no repeat, and no new alert after a quick resolve.
ALERT_COOLDOWN_MINUTES = env.int("ALERT_COOLDOWN_MINUTES", default=30)
# The thresholds of the alert rules (monitoring.alerts.RULES); each fires at or above its value.
ALERT_DEAD_LETTERS = env.int("ALERT_DEAD_LETTERS", default=1)
ALERT_RETRIES_PER_HOUR = env.int("ALERT_RETRIES_PER_HOUR", default=10)
ALERT_OVERDUE_APPROVALS = env.int("ALERT_OVERDUE_APPROVALS", default=1)
ALERT_FAILED_UPDATES = env.int("ALERT_FAILED_UPDATES", default=1)
# A worker heartbeat older than this many seconds fails /readyz and fires the worker alert.
WORKER_HEARTBEAT_MAX_AGE = env.int("WORKER_HEARTBEAT_MAX_AGE", default=120)

# --- Tests ----------------------------------------------------------------------------------
# The Redis the test suite may write to: never database 0, where a local deployment keeps its
# queue. Tests use key prefixes and queue names of their own within it.
TEST_REDIS_URL = env.str("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")

# --- Logging --------------------------------------------------------------------------------
# One console handler for every logger (Django's, django-q's, urllib3's, the project's). Its filter
# redacts tokens and passwords from each message and traceback; see backoffice.redaction.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Error pages (DEBUG on) and error reports hide sensitive variables and settings, always.
DEFAULT_EXCEPTION_REPORTER_FILTER = "backoffice.redaction.DebugSafeExceptionReporterFilter"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "backoffice.redaction.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name} [{process:d}] {message}", "style": "{"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's defaults would print only under DEBUG and mail errors (request included) to
        # ADMINS; here they go through the redacting handler and nowhere else.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "py.warnings": {"handlers": ["console"], "propagate": False},
    },
}

# --- Production safety ----------------------------------------------------------------------
# Production serves Claimdesk over HTTPS only and says so with HTTPS_ONLY=1: plain HTTP is
# redirected, cookies never travel over HTTP, and browsers are told to stay on HTTPS (HSTS).
# Off by default because local runs and the test client speak plain HTTP.
HTTPS_ONLY = env.bool("HTTPS_ONLY", default=False)
SECURE_SSL_REDIRECT = HTTPS_ONLY
# Health probes come straight to the web process over plain HTTP; they carry no secret.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if HTTPS_ONLY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = HTTPS_ONLY
# Behind a proxy that terminates TLS every request arrives as plain HTTP; trust the proxy's
# X-Forwarded-Proto only when told to, since any client can send that header.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Keep this last: with DEBUG off, refuse to start without real, strong secrets.
require_secrets(
    {
        "SECRET_KEY": SECRET_KEY,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_WEBHOOK_SECRET,
        "AUDIT_HMAC_KEY": AUDIT_HMAC_KEY,
    },
    debug=DEBUG,
)
require_fallback_keys(SECRET_KEY_FALLBACKS, debug=DEBUG)
