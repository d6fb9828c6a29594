"""Watching a directory of a sandbox's /workspace for changes (the file watch, docs/api.md §2.7).

A Watch is a watchdog observer on the real directory behind a sandbox path,
resolved through sandbox_files so that nothing outside /workspace can be watched.
Changes reach `on_change` on the observer's thread as Change(event, name, path),
with the client's event names: create, write, remove, rename, chmod; `name` is the
path relative to the watched directory (`subdir/inner.txt` in a recursive watch). A
move inside the watched directory is one `rename` naming the new path; the API's own
atomic writes (a hidden `.partial` file renamed into place) are one `create` of a new
file or one `write` of an existing one, as a direct write would be.
`on_change(None)` says the watched directory itself went away.
"""

from __future__ import annotations

import os
import posixpath
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from console.runtime.base import FileMissing
from console.sandboxes import files as sandbox_files
from console.sandboxes.files import FileOpError

# Each watch holds one inotify instance; the kernel's default is 128 per user, shared
# with everything else running as that user, so one server process keeps to half.
MAX_WATCHES = 64
# How many existing paths a watch remembers to tell a new file from an overwrite.
MAX_KNOWN = 10_000
# Bursts of identical events (one per write() call of a big file) are sent once.
REPEAT_WINDOW_SECONDS = 0.1
# sandbox_files.write_chunks' temporary names: mkstemp(prefix=".<name>.", suffix=".partial").
PARTIAL_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.partial$")
WATCHED_EVENTS = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileAttribEvent,
    DirAttribEvent,
]
EVENT_NAMES = {"created": "create", "modified": "write", "deleted": "remove", "attrib": "chmod"}

_slots = threading.BoundedSemaphore(MAX_WATCHES)


@dataclass(frozen=True)
class Change:
    event: str
    name: str
    path: str  # sandbox path, /workspace/...


def _partial(path: str) -> bool:
    return bool(PARTIAL_NAME.match(os.path.basename(path)))


def _existing(watched: Path, recursive: bool) -> tuple[set[str], bool]:
    """Host paths under `watched` now (at most MAX_KNOWN), and whether that is all."""
    known: set[str] = set()
    for directory, dirs, names in os.walk(watched):
        for name in (*dirs, *names):
            known.add(os.path.join(directory, name))
            if len(known) >= MAX_KNOWN:
                return known, False
        if not recursive:
            break
    return known, True


class _Handler(FileSystemEventHandler):
    def __init__(
        self,
        watched: Path,
        spath: str,
        on_change: Callable[[Change | None], None],
        *,
        recursive: bool,
    ):
        self.watched = str(watched)
        self.spath = spath
        self.on_change = on_change
        self.last: tuple[Change, float] | None = None
        self.known, self.complete = _existing(watched, recursive)

    def _remember(self, host_path: str, present: bool) -> None:
        if not present:
            self.known.discard(host_path)
        elif len(self.known) < MAX_KNOWN:
            self.known.add(host_path)
        else:
            self.complete = False

    def _written(self, host_path: str) -> str:
        """`create` for a file that was not there, `write` for an overwrite."""
        new = host_path not in self.known and self.complete
        self._remember(host_path, True)
        return "create" if new else "write"

    def _emit(self, event: str, host_path: str) -> None:
        rel = os.path.relpath(host_path, self.watched)
        if rel.startswith(".."):
            return
        path = self.spath if rel == "." else posixpath.join(self.spath, rel)
        change = Change(event, rel, path)
        now = time.monotonic()
        if self.last and self.last[0] == change and now - self.last[1] < REPEAT_WINDOW_SECONDS:
            return
        self.last = (change, now)
        self.on_change(change)

    def on_any_event(self, event: FileSystemEvent) -> None:
        src, dest = os.fsdecode(event.src_path), os.fsdecode(event.dest_path)
        if event.event_type == "deleted" and src == self.watched:
            self.on_change(None)
            return
        if event.event_type == "moved":
            if _partial(src):
                if not _partial(dest):
                    self._emit(self._written(dest), dest)
                return
            # One `rename` naming where the entry is now (the client counts events: a
            # rename followed by a chmod is two of them, not three).
            self._remember(src, False)
            if dest and not _partial(dest):
                if os.path.relpath(dest, self.watched).startswith(".."):
                    self._emit("remove", src)  # moved out of the watched directory
                else:
                    self._remember(dest, True)
                    self._emit("rename", dest)
            return
        name = EVENT_NAMES.get(event.event_type)
        if name and not _partial(src) and src != self.watched:
            if name in ("create", "remove"):
                self._remember(src, name == "create")
            self._emit(name, src)


class Watch:
    """One running watch; stop() ends its threads and frees its inotify instance."""

    def __init__(
        self,
        sandbox_id: str,
        path: object,
        *,
        recursive: bool,
        on_change: Callable[[Change | None], None],
        user: str | None = None,
    ) -> None:
        files = sandbox_files.store(sandbox_id)
        spath = sandbox_files.locate(sandbox_id, path, user)
        if not files.is_dir(spath):
            if not files.exists(spath):
                raise FileMissing(f"{path} does not exist")
            raise FileOpError(
                f"{path} is not a directory; watch a directory", code="invalid_request"
            )
        # Resolved inside the sandbox's root by the file store; watched by its real path.
        host = Path(files.host_path(spath))
        if not _slots.acquire(blocking=False):
            raise FileOpError(
                f"this server already runs {MAX_WATCHES} file watches; try again later",
                code="rate_limit_exceeded",
            )
        self._stopped = False
        self._lock = threading.Lock()
        self.path = spath
        self.observer = Observer()
        self.observer.name = f"file-watch-{sandbox_id}"
        self.observer.schedule(
            _Handler(host, spath, on_change, recursive=recursive),
            str(host),
            recursive=recursive,
            event_filter=WATCHED_EVENTS,
        )
        try:
            self.observer.start()
        except OSError as exc:  # EMFILE: the kernel's inotify limits
            _slots.release()
            self._stopped = True
            raise FileOpError(
                f"cannot watch {self.path}: {exc.strerror}", code="rate_limit_exceeded"
            ) from None

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            self.observer.stop()
            if self.observer is not threading.current_thread():
                self.observer.join(timeout=5)
        finally:
            _slots.release()
