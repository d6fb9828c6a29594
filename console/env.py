"""Reading settings from the environment.

Every parser raises ImproperlyConfigured naming the variable, so a bad value fails
at start instead of surfacing later as a confusing error.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ImproperlyConfigured(f"{name} must be one of true, false, 1, 0 (got {raw!r})")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer (got {raw!r})") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum} (got {value})")
    return value


def env_port_range(name: str, default: tuple[int, int]) -> tuple[int, int]:
    """`LOW-HIGH` (or one port) within 1..65535."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    low, _, high = raw.partition("-")
    try:
        ports = (int(low), int(high or low))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be LOW-HIGH, e.g. 2200-2299 (got {raw!r})"
        ) from None
    if not 1 <= ports[0] <= ports[1] <= 65535:
        raise ImproperlyConfigured(f"{name} must be LOW-HIGH within 1..65535 (got {raw!r})")
    return ports


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """The value of NAME, or the contents of the file named by NAME_FILE."""
    file_name = os.environ.get(f"{name}_FILE", "").strip()
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE cannot be read: {exc.strerror}") from None
    return env_str(name)


def env_url(name: str, default: str) -> str:
    value = env_str(name, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an http(s) URL with a host (got {value!r})")
    return value


def persistent_secret(data_dir: Path, file_name: str, env_name: str) -> str:
    """A secret from the environment, or one generated once and kept in DATA_DIR."""
    given = env_secret(env_name)
    if given:
        return given
    path = data_dir / file_name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(48)
    data_dir.mkdir(parents=True, exist_ok=True)
    # O_EXCL: when two processes start at once, the first file written wins.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
