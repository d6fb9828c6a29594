"""One settings module, read from the environment with safe local defaults."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from console.env import (
    env_bool,
    env_int,
    env_list,
    env_port_range,
    env_str,
    env_url,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = persistent_secret(DATA_DIR, "secret_key", "SECRET_KEY")
PREVIEW_SIGNING_KEY = persistent_secret(DATA_DIR, "preview_signing_key", "PREVIEW_SIGNING_KEY")

# The port bin/run serves on; without SITE_URL every URL the product prints follows it.
PORT = env_int("PORT", 8000, minimum=1)
SITE_URL = env_url("SITE_URL", f"http://localhost:{PORT}")
_site = urlsplit(SITE_URL)
SITE_HOST = _site.hostname or "localhost"
SITE_SCHEME = _site.scheme
PREVIEW_DOMAIN = env_str("PREVIEW_DOMAIN", "preview.localhost").lower().strip(".")
if not PREVIEW_DOMAIN or "/" in PREVIEW_DOMAIN or ":" in PREVIEW_DOMAIN:
    raise ImproperlyConfigured(f"PREVIEW_DOMAIN must be a bare domain (got {PREVIEW_DOMAIN!r})")
# Scheme and port that preview URLs are given out with; default: the console's.
PREVIEW_SCHEME = env_str("PREVIEW_SCHEME", SITE_SCHEME)
if PREVIEW_SCHEME not in ("http", "https"):
    raise ImproperlyConfigured(f"PREVIEW_SCHEME must be http or https (got {PREVIEW_SCHEME!r})")
PREVIEW_PORT = env_int("PREVIEW_PORT", _site.port or 0, minimum=0)

ALLOWED_HOSTS = [SITE_HOST, f".{PREVIEW_DOMAIN}", "localhost", "127.0.0.1", "[::1]"]
ALLOWED_HOSTS += env_list("EXTRA_ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = [SITE_URL] + env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "channels",
    "console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "console.middleware.RequestIdMiddleware",
    "console.security_headers.SecurityHeadersMiddleware",
    "console.cors.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.htmx.HtmxMessagesMiddleware",
    "console.views.errors.DomainErrorMiddleware",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"
APPEND_SLASH = True

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
                "console.context.navigation",
                "console.context.runtime_banner",
            ],
        },
    }
]

DATABASE_URL = env_str("DATABASE_URL")
# PostgreSQL connections per server process: a pool (psycopg_pool, through Django's
# OPTIONS["pool"]) that never opens more than DB_POOL_MAX_SIZE; a request waits up to
# DB_POOL_TIMEOUT seconds for a free one. README "Sizing PostgreSQL" says how to choose.
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", 2, minimum=0)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 20, minimum=1)
DB_POOL_TIMEOUT = env_int("DB_POOL_TIMEOUT", 10, minimum=1)
if DATABASE_URL:
    try:
        # conn_max_age=0: the pool keeps connections, Django hands them back per request.
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    except Exception as exc:  # dj-database-url raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": DB_POOL_TIMEOUT,
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "console.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured(f"REDIS_URL must be a redis:// URL (got {REDIS_URL!r})")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "signin"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "signin"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True

# Secure cookies when the console is served over HTTPS.
_https = SITE_SCHEME == "https"
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY") else None
)
# HSTS on HTTPS only (Django sends it on secure requests); a year unless told otherwise.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _https else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Nullspace <noreply@localhost>")

# Product limits (per project unless said otherwise).
MAX_RUNNING_SANDBOXES = env_int("MAX_RUNNING_SANDBOXES", 10, minimum=1)
MAX_SANDBOX_TIMEOUT_MS = env_int("MAX_SANDBOX_TIMEOUT_MS", 24 * 3600 * 1000, minimum=1000)
MAX_FILE_BYTES = env_int("MAX_FILE_BYTES", 1024 * 1024 * 1024, minimum=1024)
# A JSON body past this is refused (413) before it is read; files go as raw uploads.
API_JSON_MAX_BYTES = env_int("API_JSON_MAX_BYTES", 48 * 1024 * 1024, minimum=1024)
# /v1 list routes without limit/next_token answer the whole list up to this many rows.
LIST_UNPAGED_MAX = env_int("LIST_UNPAGED_MAX", 10_000, minimum=100)
# Agent deployments (docs/agents.md): bundle size, runs/services executed at once, kept output.
AGENT_MAX_BUNDLE_BYTES = env_int("AGENT_MAX_BUNDLE_BYTES", 512 * 1024 * 1024, minimum=1024)
AGENT_MAX_CONCURRENT = env_int("AGENT_MAX_CONCURRENT", 4, minimum=1)
# Templates (docs/templates.md): a build's time limit, log entries kept per build, one
# build-context file's size; an Ubuntu mirror makes ubuntu:<v> bases buildable.
TEMPLATE_BUILD_TIMEOUT_SECONDS = env_int("TEMPLATE_BUILD_TIMEOUT_SECONDS", 3600, minimum=10)
TEMPLATE_MAX_LOG_ENTRIES = env_int("TEMPLATE_MAX_LOG_ENTRIES", 20_000, minimum=100)
TEMPLATE_MAX_CONTEXT_FILE_BYTES = env_int(
    "TEMPLATE_MAX_CONTEXT_FILE_BYTES", 512 * 1024 * 1024, minimum=1024
)
RUNTIME_UBUNTU_MIRROR = env_str("RUNTIME_UBUNTU_MIRROR", "")
AGENT_MAX_OUTPUT_BYTES = env_int("AGENT_MAX_OUTPUT_BYTES", 256 * 1024 * 1024, minimum=1024)
AGENT_MAX_LOG_EVENTS = env_int("AGENT_MAX_LOG_EVENTS", 20_000, minimum=100)
# JSON bodies are read into memory: files/write carries content (base64 of up to 32 MiB).
DATA_UPLOAD_MAX_MEMORY_SIZE = API_JSON_MAX_BYTES
# A request body up to this size stays in memory (past it Django spools it to disk): one
# default 8 MiB upload part per connection, so parts are written once (docs/volumes.md).
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "FILE_UPLOAD_MAX_MEMORY_SIZE", 8 * 1024 * 1024, minimum=64 * 1024
)
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 1200, minimum=1)
# Token bucket per key: this many at once, refilled at the per-minute rate (docs/limits.md).
API_RATE_BURST = env_int("API_RATE_BURST", 200, minimum=1)
# Output kept per process (on disk; past it the stream says `truncated`), and what one
# blocking exec answer or logs read returns of each stream (docs/limits.md).
EXEC_OUTPUT_MAX_BYTES = env_int("EXEC_OUTPUT_MAX_BYTES", 64 * 1024 * 1024, minimum=1024)
EXEC_RESPONSE_MAX_BYTES = env_int("EXEC_RESPONSE_MAX_BYTES", 4 * 1024 * 1024, minimum=1024)
SIGNIN_MAX_FAILURES = env_int("SIGNIN_MAX_FAILURES", 5, minimum=1)
SIGNIN_LOCKOUT_SECONDS = env_int("SIGNIN_LOCKOUT_SECONDS", 300, minimum=1)
# Failures from one IP across all emails before that IP is locked out too.
SIGNIN_MAX_FAILURES_PER_IP = env_int("SIGNIN_MAX_FAILURES_PER_IP", 50, minimum=1)
# Read the client IP from this header (e.g. X-Forwarded-For) only when set: behind
# TRUSTED_PROXY_COUNT proxies that each append the address they saw (console/client_ip.py).
TRUSTED_PROXY_HEADER = env_str("TRUSTED_PROXY_HEADER")
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1, minimum=1)
# Caps that keep one project from minting without bound.
MAX_KEYS_PER_PROJECT = env_int("MAX_KEYS_PER_PROJECT", 50, minimum=1)
MAX_GRANTS_PER_SANDBOX = env_int("MAX_GRANTS_PER_SANDBOX", 200, minimum=1)

# Sandbox runtime (docs/runtime.md).
RUNTIME_DRIVER = env_str("RUNTIME_DRIVER", "local")
RUNTIME_ROOT = Path(env_str("RUNTIME_ROOT", str(DATA_DIR / "sandboxes"))).resolve()
# Private range the local driver carves /30 subnets from for veth pairs.
RUNTIME_SUBNET = env_str("RUNTIME_SUBNET", "10.213.0.0/16")
RUNTIME_NETNS = env_str("RUNTIME_NETNS", "auto")  # auto | on | off (isolation none only)
# full: each sandbox is its own machine (docs/runtime.md); none: processes on this host.
RUNTIME_ISOLATION = env_str("RUNTIME_ISOLATION", "full")
if RUNTIME_ISOLATION not in ("full", "none"):
    raise ImproperlyConfigured("RUNTIME_ISOLATION must be full or none")
# The base image is built once per machine and shared by every data directory.
RUNTIME_IMAGE_CACHE = Path(
    env_str(
        "RUNTIME_IMAGE_CACHE",
        "/var/cache/nullspace" if os.geteuid() == 0 else str(Path.home() / ".cache/nullspace"),
    )
).resolve()
# Template layers (docs/templates.md): beside the images unless put elsewhere.
RUNTIME_LAYER_DIR = Path(
    env_str("RUNTIME_LAYER_DIR", str(RUNTIME_IMAGE_CACHE / "layers"))
).resolve()
# Layers no build or sandbox of this database uses, and unused this long, are removed;
# 0 turns the worker's collection off (docs/templates.md "Garbage collection").
LAYER_GC_GRACE_HOURS = env_int("LAYER_GC_GRACE_HOURS", 24, minimum=0)
RUNTIME_IMAGE_SUITE = env_str("RUNTIME_IMAGE_SUITE", "bookworm")
RUNTIME_IMAGE_MIRROR = env_str("RUNTIME_IMAGE_MIRROR", "http://deb.debian.org/debian")
# Root inside a sandbox is this uid/gid on the host; 65536 ids from here are the sandboxes'.
RUNTIME_ID_BASE = env_int("RUNTIME_ID_BASE", 1_000_000, minimum=65536)
# Defaults and per-sandbox maxima of what a create may ask for.
SANDBOX_DEFAULT_DISK_MB = env_int("SANDBOX_DEFAULT_DISK_MB", 2048, minimum=64)
SANDBOX_MAX_DISK_MB = env_int("SANDBOX_MAX_DISK_MB", 20480, minimum=64)
SANDBOX_MAX_MEMORY_MB = env_int("SANDBOX_MAX_MEMORY_MB", 8192, minimum=64)
SANDBOX_MAX_VCPUS = env_int("SANDBOX_MAX_VCPUS", 8, minimum=1)
SANDBOX_PIDS_LIMIT = env_int("SANDBOX_PIDS_LIMIT", 1024, minimum=16)
SANDBOX_OPEN_FILES = env_int("SANDBOX_OPEN_FILES", 4096, minimum=64)
# This server's name as the owner of the sandboxes it runs (several servers may share one
# database); by default the host name and the runtime root (docs/runtime-ownership.md).
RUNTIME_INSTANCE = env_str("RUNTIME_INSTANCE", "")

# SSH access (docs/ssh.md): the CA key (default: generated once into DATA_DIR), where the
# relay listens (one port per sandbox with access, from SSH_RELAY_PORTS), the host name
# clients are told to connect to, certificate lifetimes, connections per sandbox.
SSH_CA_KEY_FILE = env_str("SSH_CA_KEY_FILE", "")
SSH_RELAY_HOST = env_str("SSH_RELAY_HOST", SITE_HOST)
SSH_RELAY_BIND = env_str("SSH_RELAY_BIND", "0.0.0.0")
SSH_RELAY_PORTS = env_port_range("SSH_RELAY_PORTS", (2200, 2299))
SSH_ACCESS_DEFAULT_MINUTES = env_int("SSH_ACCESS_DEFAULT_MINUTES", 10, minimum=1)
SSH_ACCESS_MAX_MINUTES = env_int("SSH_ACCESS_MAX_MINUTES", 60, minimum=1)
if SSH_ACCESS_DEFAULT_MINUTES > SSH_ACCESS_MAX_MINUTES:
    raise ImproperlyConfigured("SSH_ACCESS_DEFAULT_MINUTES must not exceed SSH_ACCESS_MAX_MINUTES")
SSH_RELAY_MAX_CONNECTIONS = env_int("SSH_RELAY_MAX_CONNECTIONS", 16, minimum=1)

# Browser origins allowed to call /v1 and /healthz with an API key (docs/api.md, CORS).
# `*` allows any origin; credentials by cookie are never allowed cross-origin.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])

# Volumes (docs/volumes.md): where they live, how they are stored, their limits.
VOLUMES_ROOT = Path(env_str("VOLUMES_ROOT", str(DATA_DIR / "volumes"))).resolve()
VOLUMES_BACKEND = env_str("VOLUMES_BACKEND", "auto")  # auto | image | directory
if VOLUMES_BACKEND not in ("auto", "image", "directory"):
    raise ImproperlyConfigured("VOLUMES_BACKEND must be auto, image or directory")
VOLUME_MAX_BYTES = env_int("VOLUME_MAX_BYTES", 1024 * 1024 * 1024, minimum=16 * 1024 * 1024)
MAX_VOLUMES_PER_PROJECT = env_int("MAX_VOLUMES_PER_PROJECT", 50, minimum=1)
# directory backend only: the shared file system enforces each volume directory's quota
# itself (CephFS/JuiceFS directory quotas), so read-write mounts may be allowed.
VOLUMES_EXTERNAL_QUOTA = env_bool("VOLUMES_EXTERNAL_QUOTA", False)

# Preview gateway.
PREVIEW_COOKIE_SAMESITE = env_str("PREVIEW_COOKIE_SAMESITE", "Lax")
if PREVIEW_COOKIE_SAMESITE not in ("Lax", "Strict", "None"):
    raise ImproperlyConfigured("PREVIEW_COOKIE_SAMESITE must be Lax, Strict or None")
PREVIEW_COOKIE_PARTITIONED = env_bool("PREVIEW_COOKIE_PARTITIONED", False)
PREVIEW_DEFAULT_TTL_SECONDS = env_int("PREVIEW_DEFAULT_TTL_SECONDS", 3600, minimum=60)
PREVIEW_RESUME_WAIT_SECONDS = env_int("PREVIEW_RESUME_WAIT_SECONDS", 15, minimum=1)
# Dotted path to a sync (sandbox_id, port) -> (host, port); the runtime driver by default.
PREVIEW_UPSTREAM_RESOLVER = env_str("PREVIEW_UPSTREAM_RESOLVER", "gateway.upstream.driver_address")

# Limits of the HTTP server and the gateway (docs/gateway.md, "Limits"): each bounds
# what one client or one upstream can make us hold or wait for.
HTTP_MAX_HEADER_BYTES = env_int("HTTP_MAX_HEADER_BYTES", 64 * 1024, minimum=4096)
HTTP_MAX_HEADERS = env_int("HTTP_MAX_HEADERS", 100, minimum=16)
HTTP_HEADER_TIMEOUT_SECONDS = env_int("HTTP_HEADER_TIMEOUT_SECONDS", 10, minimum=1)
HTTP_KEEPALIVE_SECONDS = env_int("HTTP_KEEPALIVE_SECONDS", 5, minimum=1)
HTTP_BODY_READ_TIMEOUT_SECONDS = env_int("HTTP_BODY_READ_TIMEOUT_SECONDS", 60, minimum=1)
HTTP_DRAIN_TIMEOUT_SECONDS = env_int("HTTP_DRAIN_TIMEOUT_SECONDS", 60, minimum=1)
WS_MAX_MESSAGE_BYTES = env_int("WS_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, minimum=1024)
PREVIEW_CONNECT_TIMEOUT_SECONDS = env_int("PREVIEW_CONNECT_TIMEOUT_SECONDS", 5, minimum=1)
# A dev server's first compile (Next.js, webpack) and a long poll both sit silent for a while.
PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS = env_int("PREVIEW_FIRST_BYTE_TIMEOUT_SECONDS", 120, minimum=1)
# Silence between two reads of a response body; SSE streams send comments more often.
PREVIEW_READ_TIMEOUT_SECONDS = env_int("PREVIEW_READ_TIMEOUT_SECONDS", 300, minimum=1)
PREVIEW_MAX_RESPONSE_HEADER_BYTES = env_int(
    "PREVIEW_MAX_RESPONSE_HEADER_BYTES", 64 * 1024, minimum=4096
)
PREVIEW_WS_OPEN_TIMEOUT_SECONDS = env_int("PREVIEW_WS_OPEN_TIMEOUT_SECONDS", 5, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}, "daphne": {"level": "WARNING"}},
}

# Jobs (docs/jobs.md): a running job whose worker is silent this long is run again.
JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 30, minimum=2)
# How often an idle worker looks for due jobs (queued ones wake it sooner; docs/jobs.md).
JOB_POLL_MS = env_int("JOB_POLL_MS", 250, minimum=10)

# Lifecycle webhooks (docs/webhooks.md).
WEBHOOK_ENCRYPTION_KEY = persistent_secret(
    DATA_DIR, "webhook_encryption_key", "WEBHOOK_ENCRYPTION_KEY"
)
# Deliver to loopback/private/link-local addresses (off: such URLs are refused).
WEBHOOK_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", False)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
# First retry after this; each further one waits twice as long (at most an hour).
WEBHOOK_RETRY_BASE_MS = env_int("WEBHOOK_RETRY_BASE_MS", 10_000, minimum=10)
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 5, minimum=1)
