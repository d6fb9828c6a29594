"""The desktop's processes in its sandbox: start them at create, bring them back when gone,
and run the X tools each route needs.

Everything runs through the runtime's process API (supervised background processes and
blocking execs as the sandbox's default user), so the desktop is no different from what a
user could start by hand; DISPLAY is set for the tools and in the sandbox's envs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from console.desktop.config import TEMPLATE, DesktopConfig
from console.errors import DomainError
from console.models import DesktopSession, Sandbox, Snapshot
from console.runtime import get_driver
from console.runtime.base import ExecRequest, ExecResult, RuntimeError_
from console.sandboxes import service as sandboxes

# Scratch space for screenshots in the sandbox (one file per call, removed after reading).
SCRATCH = "/tmp/.nullspace-desktop"
READY_SECONDS = 20  # the X server and window manager have this long to come up
START_CLAIM_SECONDS = 2 * READY_SECONDS + 5  # a start (two waits) that outlives this died
TOOL_TIMEOUT = 20.0


def desktop_of(sandbox: Sandbox) -> DesktopSession:
    """The running desktop of a sandbox; refuses other templates, restarts a lost desktop."""
    if sandbox.template != TEMPLATE:
        raise DomainError(
            "desktop_not_available",
            f"Sandbox {sandbox.public_id} is not a desktop sandbox (template {sandbox.template})",
            suggested_action="Create one with: nullspace sandbox create --template desktop",
        )
    sandboxes.require_running(sandbox)
    session = DesktopSession.objects.filter(sandbox=sandbox).first()
    if session is None:  # get_or_create: two first calls at once make one row
        session, _ = DesktopSession.objects.get_or_create(
            sandbox=sandbox, defaults=_inherited_screen(sandbox)
        )
    if not alive(sandbox, session, "xvfb") or not alive(sandbox, session, "wm"):
        # Resumed from a snapshot or forked: the processes did not come along.
        _restart(sandbox, session)
    return session


def _restart(sandbox: Sandbox, session: DesktopSession) -> None:
    """Start the desktop once, however many requests find it gone at the same moment: one
    claims the start (a conditional UPDATE, across server processes), the others wait."""
    now = timezone.now()
    claimed = (
        DesktopSession.objects.filter(pk=session.pk)
        .filter(Q(starting_until__isnull=True) | Q(starting_until__lt=now))
        .update(starting_until=now + timedelta(seconds=START_CLAIM_SECONDS))
    )
    if claimed:
        try:
            start(sandbox, session)
        finally:
            DesktopSession.objects.filter(pk=session.pk).update(starting_until=None)
        return
    deadline = time.monotonic() + START_CLAIM_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.2)
        session.refresh_from_db()
        if session.starting_until is None:
            if alive(sandbox, session, "xvfb") and alive(sandbox, session, "wm"):
                return
            break
    raise DomainError(
        "desktop_unavailable",
        f"The desktop of {sandbox.public_id} did not come back up",
        retryable=True,
    )


def _inherited_screen(sandbox: Sandbox) -> dict[str, int]:
    """A fork or a resumed sandbox gets the screen of the sandbox it came from."""
    source: Sandbox | None = None
    if sandbox.forked_from_public_id:
        source = Sandbox.objects.filter(
            project_id=sandbox.project_id, public_id=sandbox.forked_from_public_id
        ).first()
    elif sandbox.source_snapshot_public_id:
        snapshot = (
            Snapshot.objects.filter(
                project_id=sandbox.project_id, public_id=sandbox.source_snapshot_public_id
            )
            .select_related("sandbox")
            .first()
        )
        source = snapshot.sandbox if snapshot else None
    screen = DesktopSession.objects.filter(sandbox=source).first() if source else None
    if screen is None:
        return {}
    return {
        "display": screen.display,
        "width": screen.width,
        "height": screen.height,
        "dpi": screen.dpi,
    }


def create_session(sandbox: Sandbox, config: DesktopConfig) -> DesktopSession:
    session = DesktopSession.objects.create(
        sandbox=sandbox,
        display=config.display,
        width=config.width,
        height=config.height,
        dpi=config.dpi,
    )
    start(sandbox, session)
    return session


def start(sandbox: Sandbox, session: DesktopSession) -> None:
    """Xvfb on the display, then openbox; answers once both serve (READY_SECONDS)."""
    display = f":{session.display}"
    # A fork or a restored snapshot carries the last X server's lock and socket files.
    n = session.display
    run(session, sandbox, ["rm", "-f", f"/tmp/.X{n}-lock", f"/tmp/.X11-unix/X{n}"])
    run(session, sandbox, ["mkdir", "-p", SCRATCH])
    pids = dict(session.pids)
    pids["xvfb"] = background(
        sandbox,
        session,
        [
            "Xvfb",
            display,
            "-screen",
            "0",
            f"{session.width}x{session.height}x24",
            "-dpi",
            str(session.dpi),
            "-nolisten",
            "tcp",
        ],
    )
    _wait_for(sandbox, session, ["xdotool", "getdisplaygeometry"], "the X server", pids["xvfb"])
    # The window manager is up once it has published its desktops (EWMH). Under load its
    # start has been seen to fail once without a word: one more try before giving up.
    for attempt in (1, 2):
        pids["wm"] = background(sandbox, session, ["openbox"])
        try:
            _wait_for(
                sandbox, session, ["xdotool", "get_num_desktops"], "the window manager", pids["wm"]
            )
            break
        except DomainError:
            if attempt == 2:
                raise
    session.pids = pids
    session.save(update_fields=["pids"])


def _wait_for(
    sandbox: Sandbox, session: DesktopSession, argv: list[str], what: str, pid: int
) -> None:
    """Poll `argv` until it answers; give up at once if the process `pid` has ended."""
    deadline = time.monotonic() + READY_SECONDS
    delay = 0.05
    while True:
        result = run(session, sandbox, argv, check=False, timeout=5)
        if result.exit_code == 0 and result.stdout.strip():
            return
        ended = _ended(sandbox, pid)
        if ended is not None:
            raise DomainError(
                "desktop_unavailable",
                f"{what} exited at start: {ended[-300:]}",
                retryable=True,
            )
        if time.monotonic() > deadline:
            raise DomainError(
                "desktop_unavailable",
                f"{what} did not come up in {READY_SECONDS} s: {result.stderr.strip()[:300]}",
                retryable=True,
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def _ended(sandbox: Sandbox, pid: int) -> str | None:
    """The stderr of process `pid` if it has exited, else None."""
    try:
        logs = get_driver().process_logs(sandbox.runtime_id, pid, limit=4096)
    except RuntimeError_:
        return "(no record of the process)"
    return None if logs.exit_code is None else logs.stderr.strip() or f"exit {logs.exit_code}"


def alive(sandbox: Sandbox, session: DesktopSession, role: str) -> bool:
    pid = session.pids.get(role)
    if not pid:
        return False
    # One process's record (not the whole list, which every exec makes longer).
    try:
        logs = get_driver().process_logs(sandbox.runtime_id, pid, limit=1)
    except RuntimeError_:
        return False
    return logs.exit_code is None


def _request(
    session: DesktopSession, argv: Sequence[str], *, timeout: float | None, stdin: bool
) -> ExecRequest:
    return ExecRequest(
        command=argv[0],
        args=list(argv[1:]),
        envs={"DISPLAY": f":{session.display}", "HOME": "/home/user"},
        cwd="/home/user",
        timeout_secs=timeout,
        stdin=stdin,
    )


def background(
    sandbox: Sandbox, session: DesktopSession, argv: Sequence[str], *, stdin: bool = False
) -> int:
    """Start a supervised background process of the desktop; its host pid."""
    return sandboxes.start_process(sandbox, _request(session, argv, timeout=None, stdin=stdin))


def run(
    session: DesktopSession,
    sandbox: Sandbox,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = TOOL_TIMEOUT,
) -> ExecResult:
    """Run an X tool to completion; with check, a failure is a 4xx naming the tool."""
    result = sandboxes.run_command(sandbox, _request(session, argv, timeout=timeout, stdin=False))
    if check and result.exit_code != 0:
        raise DomainError(
            "desktop_command_failed",
            f"{argv[0]} failed (exit {result.exit_code}): {result.stderr.strip()[:500]}",
        )
    return result


def stop(sandbox: Sandbox, session: DesktopSession, role: str) -> None:
    """End one background process of the desktop (if it still runs) and forget it."""
    pid = session.pids.pop(role, None)
    if pid:
        driver = get_driver()
        sandboxes.quietly(lambda: driver.kill_process(sandbox.runtime_id, pid))
        sandboxes.quietly(lambda: driver.wait_process(sandbox.runtime_id, pid, 5))
    session.save(update_fields=["pids"])
