from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from console.env import (
    env_bool,
    env_int,
    env_list,
    env_port_range,
    env_secret,
    env_url,
    persistent_secret,
)


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("1", True), ("FALSE", False), ("0", False), (" ", True)]
)
def test_env_bool(monkeypatch, raw, value):
    monkeypatch.setenv("X_FLAG", raw)
    assert env_bool("X_FLAG", True) is value


@pytest.mark.parametrize("raw", ["yes", "on", "2", "tru"])
def test_env_bool_rejects_other_words(monkeypatch, raw):
    monkeypatch.setenv("X_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG")


def test_env_int(monkeypatch):
    monkeypatch.delenv("X_NUM", raising=False)
    assert env_int("X_NUM", 7) == 7
    monkeypatch.setenv("X_NUM", " 12 ")
    assert env_int("X_NUM", 7) == 12
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env_int("X_NUM", 7)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("X_NUM", 7, minimum=1)


def test_env_port_range(monkeypatch):
    monkeypatch.delenv("X_PORTS", raising=False)
    assert env_port_range("X_PORTS", (1, 2)) == (1, 2)
    monkeypatch.setenv("X_PORTS", "2200-2299")
    assert env_port_range("X_PORTS", (1, 2)) == (2200, 2299)
    monkeypatch.setenv("X_PORTS", "2222")
    assert env_port_range("X_PORTS", (1, 2)) == (2222, 2222)
    for bad in ("a-b", "2300-2200", "0-10", "70000", "1-2-3"):
        monkeypatch.setenv("X_PORTS", bad)
        with pytest.raises(ImproperlyConfigured, match="X_PORTS"):
            env_port_range("X_PORTS", (1, 2))


def test_env_list(monkeypatch):
    monkeypatch.setenv("X_LIST", " a, b ,,c ")
    assert env_list("X_LIST") == ["a", "b", "c"]
    monkeypatch.delenv("X_LIST")
    assert env_list("X_LIST", ["d"]) == ["d"]


def test_env_secret_reads_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "s"
    secret_file.write_text("from-file\n")
    monkeypatch.setenv("X_SECRET", "direct")
    assert env_secret("X_SECRET") == "direct"
    monkeypatch.setenv("X_SECRET_FILE", str(secret_file))
    assert env_secret("X_SECRET") == "from-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        env_secret("X_SECRET")


def test_env_url(monkeypatch):
    monkeypatch.setenv("X_URL", "https://console.example.com/")
    assert env_url("X_URL", "http://localhost") == "https://console.example.com"
    monkeypatch.setenv("X_URL", "console.example.com")
    with pytest.raises(ImproperlyConfigured, match="X_URL"):
        env_url("X_URL", "http://localhost")


def test_persistent_secret_is_generated_once(monkeypatch, tmp_path):
    monkeypatch.delenv("X_KEY", raising=False)
    monkeypatch.delenv("X_KEY_FILE", raising=False)
    first = persistent_secret(tmp_path, "x_key", "X_KEY")
    assert len(first) > 40
    assert persistent_secret(tmp_path, "x_key", "X_KEY") == first
    assert (tmp_path / "x_key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("X_KEY", "given")
    assert persistent_secret(tmp_path, "x_key", "X_KEY") == "given"
