"""Without what isolation needs, sandboxes are refused (naming what is missing), unless the
escape hatch RUNTIME_ISOLATION=none is set, which the console then says on every page."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from console.runtime import get_driver
from console.runtime.local import LocalDriver

CHECKOUT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from console.runtime.base import CreateSpec, RuntimeError_
from console.runtime.isolated import IsolatedDriver
driver = IsolatedDriver(sys.argv[1], "10.221.0.0/16", image_cache=sys.argv[2])
try:
    driver.create(CreateSpec(sandbox_id="sb_refused"))
except RuntimeError_ as exc:
    print(exc.code, exc)
"""


@pytest.fixture
def open_dir():
    """A directory the user nobody may write (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nullspace-probe-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_machine_that_cannot_isolate_refuses_sandboxes(open_dir):
    """As an unprivileged user (a real one: nobody), the driver names what is missing."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the probe as another user")
    tmp_path = open_dir
    result = subprocess.run(
        ["/usr/bin/python3", "-c", PROBE, str(tmp_path / "rt"), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        user="nobody",
        cwd=CHECKOUT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(CHECKOUT)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("runtime_unavailable "), result.stdout
    assert "root" in result.stdout and "RUNTIME_ISOLATION=none" in result.stdout
    assert not (tmp_path / "rt" / "sb_refused").exists()


def test_the_escape_hatch_warns_and_shows_a_banner(settings, owner_client, project, caplog):
    settings.RUNTIME_ISOLATION = "none"
    get_driver.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert isinstance(get_driver(), LocalDriver)
        assert "RUNTIME_ISOLATION=none" in caplog.text
        page = owner_client.get("/", follow=True)
        assert b"without isolation" in page.content
    finally:
        get_driver.cache_clear()
    settings.RUNTIME_ISOLATION = "full"
    assert b"without isolation" not in owner_client.get("/", follow=True).content
