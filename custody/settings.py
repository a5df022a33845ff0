"""Settings for the custody server: one file, read from the environment.

Everything has an embedded default (SQLite and the filesystem broker under
CUSTODY_DATA_DIR) so checkout, install, migrate, run works with no server.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from custody.storage import BlobError, parse_blob_store, private_dir  # pure module: no Django settings needed

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_secret(name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (Docker-style)."""
    value = os.getenv(name)
    if value:
        return value
    path = os.getenv(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return None


_SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def env_limits(name: str, sizes: bool = False) -> dict[str, int]:
    """``analyzer=value`` pairs separated by ``,`` (``*`` for every analyzer); sizes may end in K, M or G."""
    limits = {}
    for item in (os.getenv(name) or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        raw = raw.strip().upper()
        suffix = raw[-1:] if sizes and raw[-1:] in _SIZE_SUFFIXES else ""
        number = raw[: len(raw) - len(suffix)]
        if not sep or not key.strip() or not number.isdigit() or int(number) <= 0:
            unit = "a size in bytes (or with K, M, G)" if sizes else "whole seconds"
            raise ImproperlyConfigured(f"{name}: each item is 'analyzer=value' with {unit} > 0, got {item!r}")
        limits[key.strip()] = int(number) * _SIZE_SUFFIXES[suffix]
    return limits


def env_witnesses(name: str) -> list[tuple[str, str]]:
    """``URL VKEY`` pairs separated by ``;`` (C2SP cosigner verifier keys); checked here, loudly."""
    from custody import cosign  # pure module: no Django, no settings

    pairs = []
    for item in (os.getenv(name) or "").split(";"):
        if not item.strip():
            continue
        parts = item.split()
        if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"{name}: each witness is 'URL VKEY', got {item.strip()!r}")
        try:
            cosign.parse_verifier_key(parts[1])
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {exc}") from None
        pairs.append((parts[0].rstrip("/"), parts[1]))
    return pairs


DEBUG = env_bool("DJANGO_DEBUG", False)

DATA_DIR = Path(os.getenv("CUSTODY_DATA_DIR") or BASE_DIR / "var").resolve()

SECRET_KEY = env_secret("DJANGO_SECRET_KEY")
for _place in (Path(os.getenv("CUSTODY_KEY_DIR") or DATA_DIR / "keys"), DATA_DIR):
    # Written by scripts/serve on first run (into the key directory; earlier
    # versions used the data directory), so manage.py commands run with the
    # defaults find the same key as the server.
    if not SECRET_KEY and (_place / "secret_key").is_file():
        SECRET_KEY = (_place / "secret_key").read_text().strip()
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE), or DJANGO_DEBUG=1 for development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105 - DEBUG only

# Earlier secret keys, one per line (DJANGO_SECRET_KEY_FALLBACKS, or the file named by
# DJANGO_SECRET_KEY_FALLBACKS_FILE): what they signed (sessions, the seals on passwords, API
# tokens and uploads, queued log rows) still checks; `manage.py reseal_credentials` moves the
# password and token seals to the current key, after which the old key can go.
SECRET_KEY_FALLBACKS = [
    k.strip() for k in (env_secret("DJANGO_SECRET_KEY_FALLBACKS") or "").splitlines() if k.strip()
]

ALLOWED_HOSTS = [
    h.strip() for h in os.getenv("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.getenv("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    # First: its management commands (createsuperuser, which refuses and
    # points to create_user, so every account is logged) win over Django's.
    "custody",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "forensics",
    "csp",
]

MIDDLEWARE = [
    # Outermost: HEAD answers keep their headers and lose their body.
    "custody.middleware.HeadWithoutBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Second factor (custody/second_factor.py): django-otp tells whether this
    # session gave its code; ours sends whoever owes one to that page.
    "django_otp.middleware.OTPMiddleware",
    "custody.second_factor.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # After authentication, and after WhiteNoise has answered for static
    # files: those stay cacheable, every answer to a signed-in user does not.
    "custody.middleware.NoStoreForAuthenticatedMiddleware",
    # Last: turns a login refused by django-axes into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

# Failed logins (web, admin, API token) are counted by django-axes in the
# database, so every server process sees the same count: after
# CUSTODY_LOGIN_FAILURE_LIMIT failures for one account, or from one client
# address, logins are refused for CUSTODY_LOGIN_COOLOFF_MINUTES, even with
# the right password. Its backend goes first so a locked-out login never
# reaches the password check.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "custody.auth.SealedModelBackend",
]
CUSTODY_LOGIN_FAILURE_LIMIT = env_int("CUSTODY_LOGIN_FAILURE_LIMIT", 10)
CUSTODY_LOGIN_COOLOFF_MINUTES = env_int("CUSTODY_LOGIN_COOLOFF_MINUTES", 15)
if CUSTODY_LOGIN_FAILURE_LIMIT < 1 or CUSTODY_LOGIN_COOLOFF_MINUTES < 1:
    raise ImproperlyConfigured("CUSTODY_LOGIN_FAILURE_LIMIT and CUSTODY_LOGIN_COOLOFF_MINUTES must be >= 1")
# Proxies (exact addresses, comma-separated) whose X-Forwarded-For is
# believed; from anyone else it is ignored and REMOTE_ADDR is the client.
CUSTODY_TRUSTED_PROXIES = frozenset(
    p.strip() for p in os.getenv("CUSTODY_TRUSTED_PROXIES", "").split(",") if p.strip()
)
AXES_ENABLED = True
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = CUSTODY_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CUSTODY_LOGIN_COOLOFF_MINUTES)
# Either limit locks: per account (a spread-out guess at one password) and
# per address (one client trying many accounts).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "custody.login_limits.client_ip"
AXES_LOCKOUT_CALLABLE = "custody.login_limits.lockout_response"
# A success does not wipe the count: an attacker's own account must not reset its address's count.
AXES_RESET_ON_SUCCESS = False
AXES_HTTP_RESPONSE_CODE = 429

# Second factor (README, "Second factor"): the name authenticator apps show,
# and the throttles on wrong codes: after n wrong codes in a row, the next
# try waits FACTOR * 2**(n-1) seconds (at least 1: django-otp takes 0 as off).
OTP_TOTP_ISSUER = os.getenv("CUSTODY_OTP_ISSUER", "Custody server")
OTP_TOTP_THROTTLE_FACTOR = env_int("CUSTODY_OTP_THROTTLE_FACTOR", 1)
OTP_STATIC_THROTTLE_FACTOR = OTP_TOTP_THROTTLE_FACTOR
if OTP_TOTP_THROTTLE_FACTOR < 1:
    raise ImproperlyConfigured("CUSTODY_OTP_THROTTLE_FACTOR must be >= 1: wrong codes must be limited")

ROOT_URLCONF = "custody.urls"
WSGI_APPLICATION = "custody.wsgi.application"
AUTH_USER_MODEL = "custody.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "case-list"
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


def sqlite_database(path: str | Path, test_path: str | Path | None) -> dict:
    """SQLite as the server needs it, whether from the default or a sqlite:// DATABASE_URL."""
    config = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # Writers take the lock when the transaction begins, not at
            # their first write: a log append reads the tree head and then
            # writes, and two deferred transactions doing that deadlock.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            # WAL: readers (verify_log, the API) do not block the appender;
            # FULL: a committed log entry survives a power cut.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        },
    }
    if test_path is not None:
        # The test database is a file too, so that gunicorn and Celery
        # workers started by the tests see the same data.
        config["TEST"] = {"NAME": str(test_path)}
    return config


# Database: SQLite in the data dir unless DATABASE_URL says otherwise.
#
# PostgreSQL may use two roles (README, "Database roles"): DATABASE_MIGRATE_URL
# owns the tables and runs migrations; DATABASE_URL, the role every server
# and worker process uses, may only read and append the log tables
# (`manage.py grant_app_role`). Only the release step sets CUSTODY_DB_OWNER=1,
# which makes the default database connect as the owner, so migrate and
# grant_app_role run as the owner with no second alias that migrations would
# have to be told about.
DATABASE_URL = os.getenv("DATABASE_URL", "")
DATABASE_MIGRATE_URL = os.getenv("DATABASE_MIGRATE_URL", "")
CUSTODY_DB_OWNER = env_bool("CUSTODY_DB_OWNER", False)
# PostgreSQL: entries that change no custody table (views, downloads, fixity
# checks, refusals, exports) are queued in the action's transaction and
# indexed in batches after its commit (custody/log.py); 0 appends them all
# directly, each holding the log head's lock to its commit (460-1,040/s with
# 8 writers in bench/log.py runs here).
CUSTODY_LOG_QUEUE = env_bool("CUSTODY_LOG_QUEUE", True)
# The role grant_app_role grants to: DATABASE_URL's user when there is an owner apart from it.
CUSTODY_DB_APP_ROLE = ""
if DATABASE_MIGRATE_URL:
    if not DATABASE_URL:
        raise ImproperlyConfigured("DATABASE_MIGRATE_URL needs DATABASE_URL (the app's role) as well")
    _app, _owner = dj_database_url.parse(DATABASE_URL), dj_database_url.parse(DATABASE_MIGRATE_URL)
    if _owner["ENGINE"] != "django.db.backends.postgresql" or _app["ENGINE"] != _owner["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_MIGRATE_URL is for PostgreSQL only (postgres://...)")
    # Host and port may differ (the app through a pooler, migrations direct);
    # the database name may not, or the grant would go to another database.
    if _app["NAME"] != _owner["NAME"]:
        raise ImproperlyConfigured("DATABASE_URL and DATABASE_MIGRATE_URL must name the same database")
    if not _app["USER"] or _app["USER"] == _owner["USER"]:
        raise ImproperlyConfigured(
            "with DATABASE_MIGRATE_URL, DATABASE_URL must name the app's own role (postgres://ROLE@host/db)"
        )
    CUSTODY_DB_APP_ROLE = _app["USER"]
    if CUSTODY_DB_OWNER:
        DATABASE_URL = DATABASE_MIGRATE_URL
if DATABASE_URL:
    # Connections are kept for a minute and checked before each request
    # reuses one: after the database restarts, the first request reconnects
    # instead of failing on a dead connection.
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        # The URL names the file; locking and durability stay those of the default.
        _path = DATABASES["default"]["NAME"]
        _test = None if _path == ":memory:" else Path(_path).with_name("test-" + Path(_path).name)
        DATABASES = {"default": sqlite_database(_path, _test)}
else:
    DATABASES = {"default": sqlite_database(DATA_DIR / "custody.sqlite3", DATA_DIR / "test-custody.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve static files straight from the apps, so the server works before (or
# without) collectstatic; the release step still collects them.
WHITENOISE_USE_FINDERS = True

# Evidence intake. Every upload, from the API or the web form, goes through
# the hashing handler: it writes each chunk once to a temporary file on the
# same filesystem as the blob store (so storing is a hard link, not a copy)
# and feeds SHA-256, SHA-1 and MD5 as it goes. No in-memory handler: small
# files take the same path as large ones.
FILE_UPLOAD_HANDLERS = ["custody.uploads.HashingUploadHandler"]
FILE_UPLOAD_TEMP_DIR = DATA_DIR / "tmp"
# Django's checks insist the upload directory exists; create the data dir's
# skeleton here so a fresh checkout starts without a setup step. The data
# dir holds evidence, keys and the database: its owner's only (0700),
# whatever the umask, and so are the directories made in it.
try:
    private_dir(DATA_DIR)
    private_dir(FILE_UPLOAD_TEMP_DIR)
except PermissionError as exc:
    raise ImproperlyConfigured(
        f"CUSTODY_DATA_DIR ({DATA_DIR}) must belong to the server's user, who makes it mode 0700: {exc}"
    ) from None
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
CUSTODY_BLOB_DIR = DATA_DIR / "blobs"
# Where evidence, artifacts and signed statements are kept: empty for the
# directory above, or s3://bucket/prefix for an S3-compatible object store
# (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, as boto3 reads
# them; README, "Object storage").
CUSTODY_BLOB_STORE = os.getenv("CUSTODY_BLOB_STORE", "")
try:
    parse_blob_store(CUSTODY_BLOB_STORE)
except BlobError as exc:
    raise ImproperlyConfigured(str(exc)) from None
CUSTODY_S3_ENDPOINT_URL = os.getenv("CUSTODY_S3_ENDPOINT_URL") or os.getenv("AWS_ENDPOINT_URL") or None
CUSTODY_S3_REGION = os.getenv("AWS_REGION") or os.getenv("AWS_DEFAULT_REGION") or None
# COMPLIANCE retention of each object in a bucket with Object Lock (nobody,
# not even the account's root, can delete it or shorten it before then).
CUSTODY_S3_RETENTION_DAYS = env_int("CUSTODY_S3_RETENTION_DAYS", 3650)
CUSTODY_S3_MAX_ATTEMPTS = env_int("CUSTODY_S3_MAX_ATTEMPTS", 3)
# Resumable (tus) uploads in progress; on the blobs' filesystem, so a finished
# upload is hard-linked into the store, not copied.
CUSTODY_RESUMABLE_DIR = DATA_DIR / "resumable"
# Where web nodes share the bytes of unfinished resumable uploads, so a client
# can resume on any node: empty (each node keeps its own, resume on the same
# node) or s3://bucket/prefix, a bucket without Object Lock (README, "Several
# hosts").
CUSTODY_UPLOAD_STAGING = os.getenv("CUSTODY_UPLOAD_STAGING", "")
try:
    if parse_blob_store(CUSTODY_UPLOAD_STAGING)[0] != "s3" and CUSTODY_UPLOAD_STAGING.strip():
        raise BlobError(f"must be empty or s3://bucket/prefix, got {CUSTODY_UPLOAD_STAGING!r}")
except BlobError as exc:
    raise ImproperlyConfigured(f"CUSTODY_UPLOAD_STAGING: {exc}") from None
# The signing keys' private halves, encrypted (custody/keys.py). With several
# hosts, every web and worker host holds a copy of this directory.
CUSTODY_KEY_DIR = Path(os.getenv("CUSTODY_KEY_DIR") or DATA_DIR / "keys").resolve()
CUSTODY_UPLOAD_CHUNK_SIZE = env_int("CUSTODY_UPLOAD_CHUNK_SIZE", 1024 * 1024)
# Upload limits (custody/limits.py), each refused with 413: the largest file
# accepted and the bytes a case may hold (0: no limit), and the free space
# an upload must leave on the data dir's disk for everything else.
CUSTODY_MAX_UPLOAD_BYTES = env_int("CUSTODY_MAX_UPLOAD_BYTES", 0)
CUSTODY_CASE_QUOTA_BYTES = env_int("CUSTODY_CASE_QUOTA_BYTES", 0)
CUSTODY_FREE_SPACE_RESERVE_BYTES = env_int("CUSTODY_FREE_SPACE_RESERVE_BYTES", 256 * 1024 * 1024)
CUSTODY_LOG_ORIGIN = os.getenv("CUSTODY_LOG_ORIGIN", "custody.localhost/log")
CUSTODY_KEY_PASSPHRASE = env_secret("CUSTODY_KEY_PASSPHRASE")
# Without a passphrase the server keeps a generated one in this file (mode
# 0600); set CUSTODY_KEY_PASSPHRASE in production so keys and passphrase are
# not stored side by side.
CUSTODY_KEY_PASSPHRASE_FALLBACK_FILE = CUSTODY_KEY_DIR / "passphrase"
# scrypt cost for new key files (2**17 = 128 MiB of memory per derivation).
CUSTODY_KEY_SCRYPT_N = env_int("CUSTODY_KEY_SCRYPT_N", 2**17)
# RFC 3161 time-stamp authorities (comma-separated URLs) and the PEM files
# holding the CA certificates their tokens must chain to. None configured is
# valid: checkpoints are then not time-stamped. URLs without anchors are not:
# a token nobody can check proves nothing.
CUSTODY_TSA_URLS = [u.strip() for u in os.getenv("CUSTODY_TSA_URLS", "").split(",") if u.strip()]
CUSTODY_TSA_CA_FILES = [
    Path(f.strip()) for f in os.getenv("CUSTODY_TSA_CA_FILES", "").split(",") if f.strip()
]
for _url in CUSTODY_TSA_URLS:
    if not _url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"CUSTODY_TSA_URLS: {_url!r} is not an http(s) URL")
if CUSTODY_TSA_URLS and not CUSTODY_TSA_CA_FILES:
    raise ImproperlyConfigured("CUSTODY_TSA_URLS is set: set CUSTODY_TSA_CA_FILES to the TSA CA certificates")
for _path in CUSTODY_TSA_CA_FILES:
    if not _path.is_file():
        raise ImproperlyConfigured(f"CUSTODY_TSA_CA_FILES: {str(_path)!r} is not a file")
# Seconds to wait for one TSA's answer; a slow TSA delays its stamp, nothing else.
CUSTODY_TSA_TIMEOUT = env_int("CUSTODY_TSA_TIMEOUT", 10)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "custody.auth.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "custody.permissions.ReadOnlyForAuditors",
    ],
    "DEFAULT_SCHEMA_CLASS": "custody.api.ContractSchema",
    "EXCEPTION_HANDLER": "custody.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": os.getenv("CUSTODY_AUTH_RATE", "30/min"),
        "public": os.getenv("CUSTODY_PUBLIC_RATE", "120/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Custody server API",
    "DESCRIPTION": (
        "Forensic evidence chain of custody: intake with streamed hashing, signed "
        "receipts (DSSE over in-toto Statement v1) and a tamper-evident log."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Self-hosted Swagger UI and Redoc: the docs work without a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema is the contract (custody.api): HEAD for tus, the common errors on every operation.
    "DEFAULT_GENERATOR_CLASS": "custody.api.ContractSchemaGenerator",
    # No badge fetched from validator.swagger.io: the CSP would block it, and
    # the schema is not to be sent elsewhere.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# Celery: the filesystem broker under the data dir unless CELERY_BROKER_URL.
CELERY_BROKER_URL = os.getenv("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = DATA_DIR / "broker"
CELERY_TASK_DEFAULT_QUEUE = os.getenv("CUSTODY_CELERY_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Periodic work, run by the Procfile's `beat` process: re-hash every blob
# (fixity), sign a checkpoint whenever the log has grown, time-stamp it, and
# ask the witnesses to cosign the newest one.
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Analyzer modules beyond the built-in ones (dotted paths, comma-separated).
CUSTODY_EXTRA_ANALYZERS = [
    m.strip() for m in os.getenv("CUSTODY_EXTRA_ANALYZERS", "").split(",") if m.strip()
]
# A running analysis whose heartbeat is older than this is re-queued.
CUSTODY_ANALYSIS_STALE_SECONDS = env_int("CUSTODY_ANALYSIS_STALE_SECONDS", 120)
# A queued analysis whose task message was sent this long ago is sent again
# (the broker may have lost it: Redis restarted without persistence).
CUSTODY_ANALYSIS_RESEND_SECONDS = env_int("CUSTODY_ANALYSIS_RESEND_SECONDS", 600)
# Each analysis runs in a child process with a wall-clock time limit and an
# address-space limit; the defaults are each analyzer's TIME_LIMIT (seconds)
# and MEMORY_LIMIT (bytes), overridden here per analyzer name (or "*"), e.g.
# CUSTODY_ANALYSIS_TIME_LIMITS="audio.context=7200" and
# CUSTODY_ANALYSIS_MEMORY_LIMITS="audio.enf=6G,*=4G".
CUSTODY_ANALYSIS_TIME_LIMITS = env_limits("CUSTODY_ANALYSIS_TIME_LIMITS")
CUSTODY_ANALYSIS_MEMORY_LIMITS = env_limits("CUSTODY_ANALYSIS_MEMORY_LIMITS", sizes=True)
# A run whose worker dies (killed, out of memory, machine lost) is re-queued
# by the sweeper until it has been started this many times; then it fails.
CUSTODY_ANALYSIS_MAX_ATTEMPTS = env_int("CUSTODY_ANALYSIS_MAX_ATTEMPTS", 3)
# Unfinished resumable (tus) uploads untouched this long are removed.
CUSTODY_UPLOAD_EXPIRY_SECONDS = env_int("CUSTODY_UPLOAD_EXPIRY_SECONDS", 7 * 24 * 3600)
# Witnesses (C2SP tlog-witness) that cosign checkpoints; a checkpoint is
# final once CUSTODY_WITNESS_QUORUM of them (default: all) have cosigned it.
CUSTODY_WITNESSES = env_witnesses("CUSTODY_WITNESSES")
CUSTODY_WITNESS_QUORUM = env_int("CUSTODY_WITNESS_QUORUM", len(CUSTODY_WITNESSES))
if CUSTODY_WITNESSES and not 1 <= CUSTODY_WITNESS_QUORUM <= len(CUSTODY_WITNESSES):
    raise ImproperlyConfigured(
        f"CUSTODY_WITNESS_QUORUM must be between 1 and the {len(CUSTODY_WITNESSES)} configured witnesses"
    )
# Seconds to wait for a witness: a slow witness must not hold the task for long.
CUSTODY_WITNESS_TIMEOUT = env_int("CUSTODY_WITNESS_TIMEOUT", 5)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-analyses": {
        "task": "forensics.sweep_stale",
        "schedule": float(env_int("CUSTODY_SWEEP_INTERVAL", 60)),
    },
    "fixity-all": {
        "task": "custody.check_fixity_all",
        "schedule": float(env_int("CUSTODY_FIXITY_INTERVAL", 24 * 3600)),
    },
    "checkpoint": {
        "task": "custody.sign_checkpoint",
        "schedule": float(env_int("CUSTODY_CHECKPOINT_INTERVAL", 60)),
    },
    "witness": {
        "task": "custody.witness_checkpoints",
        "schedule": float(env_int("CUSTODY_WITNESS_INTERVAL", 60)),
    },
    "expired-uploads": {
        "task": "custody.sweep_expired_uploads",
        "schedule": 3600.0,
    },
    # Stamp the newest checkpoint at each TSA (does nothing without CUSTODY_TSA_URLS).
    "timestamp-checkpoints": {
        "task": "custody.timestamp_checkpoints",
        "schedule": float(env_int("CUSTODY_TSA_INTERVAL", 600)),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("DJANGO_LOG_LEVEL", "INFO")},
}

SESSION_COOKIE_HTTPONLY = True
# Rows named by a digest of the session key, never the key (the cookie) itself: custody/sessions.py.
SESSION_ENGINE = "custody.sessions"
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp) on every page: scripts and styles come
# from this server's own files only, never inline, so an injected <script>
# or on* handler does not run. The pages that need more (Redoc) widen it
# with a decorator in urls.py, for that page alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # data: for the icons Swagger UI's stylesheet embeds.
        "img-src": [SELF, "data:"],
        "worker-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Behind TLS (README, "TLS and headers"): one switch, CUSTODY_TLS=1, turns on
# HSTS for a year (subdomains included) and Secure session and CSRF cookies.
# The proxy's X-Forwarded-Proto is believed only with CUSTODY_BEHIND_TLS_PROXY=1,
# for a proxy that sets it itself: otherwise any client could claim https.
CUSTODY_TLS = env_bool("CUSTODY_TLS", False)
SECURE_HSTS_SECONDS = 365 * 24 * 3600 if CUSTODY_TLS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = CUSTODY_TLS
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("CUSTODY_BEHIND_TLS_PROXY") else None
)
# Optional: redirect plain http to https here rather than at the proxy.
SECURE_SSL_REDIRECT = CUSTODY_TLS and env_bool("CUSTODY_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = CUSTODY_TLS or env_bool("CUSTODY_SECURE_COOKIES", False)
