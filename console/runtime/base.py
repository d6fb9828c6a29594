"""The driver interface every sandbox runtime implements (local today, Kubernetes later).

Drivers are synchronous and thread-safe; async callers use asyncio.to_thread. They
raise RuntimeError_ subclasses with a stable `code`, which the API maps to the
contract's error envelope. Paths given to file methods are sandbox paths
(`/workspace/...` or relative to it); a driver refuses anything that escapes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

if TYPE_CHECKING:
    from console.runtime.layer_store import Collection


class RuntimeError_(Exception):
    code = "runtime_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class SandboxMissing(RuntimeError_):
    code = "sandbox_not_found"


class ProcessMissing(RuntimeError_):
    code = "process_not_found"


class PathRefused(RuntimeError_):
    """A path outside /workspace (`..`, absolute elsewhere, or a symlink escape)."""

    code = "invalid_request"


class FileMissing(RuntimeError_):
    code = "file_not_found"


class ExecTimeout(RuntimeError_):
    code = "exec_timeout"


@dataclass(frozen=True)
class VolumeMount:
    """A host directory bound into a sandbox at `target` (read-only enforced by the kernel)."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class EgressPolicy:
    """Where a sandbox may connect: allow_out CIDRs always, deny_out never, then `internet`."""

    internet: bool = True
    allow_out: tuple[str, ...] = ()
    deny_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class CreateSpec:
    sandbox_id: str
    envs: dict[str, str] = field(default_factory=dict)
    template: str = "base"
    memory_mb: int = 512
    vcpus: int = 2
    disk_mb: int | None = None  # None: the driver's default
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    hostname: str = ""  # default: the sandbox id with `_` as `-` (its label)
    cwd: str = "/workspace"  # where processes start and relative file paths begin
    # A snapshot archive to restore the workspace from (create-from-snapshot, fork).
    restore_from: Path | None = None
    # A custom template: its layers (ids in the runtime's layer store, topmost first) over
    # the builtin image `template` of the Debian suite `image_suite` (None: the server's).
    layers: tuple[str, ...] = ()
    image_suite: str | None = None
    default_user: str | None = None  # who processes run as unless a request says


@dataclass(frozen=True)
class ExecRequest:
    command: str
    args: list[str] = field(default_factory=list)
    shell: bool = False
    cwd: str | None = None  # sandbox path; default the sandbox's cwd
    envs: dict[str, str] = field(default_factory=dict)
    timeout_secs: float | None = 30  # enforced by the caller (wait_process + kill_process)
    stdin: bool = True  # False: the process reads /dev/null (EOF at once)
    user: str | None = None  # a user of the sandbox; default its default user


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    pid: int
    truncated: bool = False  # output past the cap was left out (docs/limits.md)


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    command: str
    running: bool
    exit_code: int | None = None
    oom_killed: bool = False


# What one read of a process's logs holds in memory per stream, unless the caller says.
LOG_READ_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class ProcessLogs:
    stdout: str
    stderr: str
    output: str  # stdout and stderr interleaved in arrival order
    exit_code: int | None
    # True when output was cut: by the per-process cap, or by the `limit` of this read.
    truncated: bool = False
    oom_killed: bool = False  # the kernel killed it for going over memory_mb


@dataclass(frozen=True)
class OutputEvent:
    """One piece of streamed process output: kind is stdout, stderr, exit, or truncated
    (once, where the per-process output cap cut the rest off; the exit event says it too)."""

    kind: str
    data: str = ""
    exit_code: int | None = None
    truncated: bool = False


@dataclass(frozen=True)
class RuntimeEvent:
    """Something that happened inside a sandbox on its own (kind `oom`: a process was
    killed for going over memory_mb)."""

    sandbox_id: str
    kind: str
    details: dict[str, Any]


@dataclass(frozen=True)
class PtyRequest:
    """A login shell on a pseudo terminal (a PTY session); its output is the process's stdout."""

    session_id: str
    cols: int
    rows: int
    cwd: str | None = None
    envs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PtyInfo:
    session_id: str
    pid: int
    cols: int
    rows: int


@dataclass(frozen=True)
class Metrics:
    timestamp: str
    cpu_percent: float
    cpu_count: int
    mem_used_bytes: int
    mem_total_bytes: int
    disk_used_bytes: int
    disk_total_bytes: int
    network_rx_bytes: int | None = None
    network_tx_bytes: int | None = None


@dataclass(frozen=True)
class FileEntry:
    name: str
    path: str  # sandbox path, e.g. /workspace/app.py
    is_dir: bool
    size: int
    type: str  # file | dir | symlink
    mode: int
    permissions: str  # e.g. -rw-r--r--
    owner: str
    group: str
    modified_time: str
    symlink_target: str | None = None


class FileStore(ABC):
    """A sandbox's files as the host reaches them: every path is a sandbox path, and
    nothing here can reach outside the sandbox (local: paths.py; remote: an agent)."""

    cwd: str

    @abstractmethod
    def path(self, path: str | None, *, user: str | None = None) -> str:
        """The absolute sandbox path for `path` (relative: from the user's home or the cwd)."""

    @abstractmethod
    def stat(self, path: str, *, follow: bool = False) -> FileEntry: ...

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def is_dir(self, path: str) -> bool: ...

    @abstractmethod
    def list(self, path: str, depth: int = 1) -> list[FileEntry]: ...

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO: ...

    @abstractmethod
    def walk(self, path: str) -> Iterator[tuple[str, FileEntry]]:
        """Every entry at and below `path`, never following symlinks."""

    @abstractmethod
    def write(
        self,
        path: str,
        chunks: Iterable[bytes],
        *,
        limit: int,
        user: str | None = None,
        mode: int | None = None,
    ) -> FileEntry:
        """Atomically replace `path` with the chunks (an overwrite without `user` keeps mode
        and owner); more than `limit` bytes is refused and leaves nothing behind."""

    @abstractmethod
    def mkdir(self, path: str, *, user: str | None = None) -> None: ...

    @abstractmethod
    def makedirs(self, path: str, *, user: str | None = None) -> None: ...

    @abstractmethod
    def remove(self, path: str) -> None: ...

    @abstractmethod
    def rename(self, old: str, new: str, *, user: str | None = None) -> FileEntry: ...

    @abstractmethod
    def chmod(self, path: str, mode: int) -> None: ...

    @abstractmethod
    def symlink(self, path: str, target: str, *, user: str | None = None) -> None: ...

    @abstractmethod
    def host_path(self, spath: str, *, follow: bool = True) -> str:
        """The real path of an existing file, for watching it (local drivers only)."""


class Driver(ABC):
    # --- lifecycle -------------------------------------------------------------------
    @abstractmethod
    def create(self, spec: CreateSpec, *, mounts: Sequence[VolumeMount] = ()) -> dict[str, Any]:
        """Make the sandbox (with `mounts` bound in) and return the runtime state to store
        on its row."""

    @abstractmethod
    def destroy(self, sandbox_id: str) -> None:
        """End every process, free the network, remove the workspace. Idempotent."""

    @abstractmethod
    def pause(self, sandbox_id: str) -> None:
        """Stop every process of the sandbox for real (a paused sandbox serves nothing)."""

    @abstractmethod
    def resume(self, sandbox_id: str) -> None:
        """Continue every process stopped by pause."""

    @abstractmethod
    def exists(self, sandbox_id: str) -> bool: ...

    @abstractmethod
    def reconcile(self, live_sandbox_ids: set[str]) -> list[str]:
        """Remove every runtime trace of sandboxes not in the set; return their ids."""

    def take_events(self) -> list[RuntimeEvent]:
        """Events since the last call (each handed out once, to one caller)."""
        return []

    # --- template layers (docs/templates.md) --------------------------------------------
    def capture_layer(self, sandbox_id: str, layer_id: str) -> int:
        """Keep the sandbox's writable layer as template layer `layer_id`; its size."""
        raise RuntimeError_(
            "custom templates need isolated sandboxes (RUNTIME_ISOLATION=full)",
            code="not_implemented",
        )

    def has_layer(self, layer_id: str) -> bool:
        return False

    def remove_layer(self, layer_id: str) -> None:
        return None

    def touch_layer(self, layer_id: str) -> None:
        """Stamp the layer as used now (a build reuses it): garbage collection spares it."""
        return None

    def layers_in_use(self) -> set[str]:
        """The layers under this server's sandboxes now (running or paused)."""
        return set()

    def collect_layers(
        self, referenced: set[str], grace_seconds: float, *, dry_run: bool = False
    ) -> Collection | None:
        """Remove unreferenced layers unused for the grace period (None: no layer store)."""
        return None

    # --- processes -------------------------------------------------------------------
    @abstractmethod
    def start_process(
        self, sandbox_id: str, request: ExecRequest, *, default_cwd: str, envs: dict[str, str]
    ) -> int:
        """Start a process in the background and return its pid. Output is kept for logs."""

    @abstractmethod
    def wait_process(self, sandbox_id: str, pid: int, timeout: float | None) -> int | None:
        """Block until the process exits (its exit code) or the timeout passes (None)."""

    @abstractmethod
    def follow_output(
        self,
        sandbox_id: str,
        pid: int,
        *,
        stop_after: float | None = None,
        stop: threading.Event | None = None,
        tail_bytes: int | None = None,
    ) -> Iterator[OutputEvent]:
        """Yield output as it arrives, ending with one `exit` event (or at stop_after seconds,
        or soon after `stop` is set). With tail_bytes, earlier output is cut to about that."""

    @abstractmethod
    def processes(self, sandbox_id: str) -> list[ProcessInfo]: ...

    @abstractmethod
    def process_logs(
        self, sandbox_id: str, pid: int, *, limit: int = LOG_READ_LIMIT
    ) -> ProcessLogs:
        """Output so far, reading at most `limit` bytes of each stream (truncated says so)."""

    @abstractmethod
    def kill_process(self, sandbox_id: str, pid: int) -> None: ...

    @abstractmethod
    def write_stdin(self, sandbox_id: str, pid: int, data: bytes) -> None: ...

    # --- pseudo terminals (input: write_stdin; output: follow_output; end: kill_process) ---
    def start_pty(
        self, sandbox_id: str, request: PtyRequest, *, default_cwd: str, envs: dict[str, str]
    ) -> int:
        """Start a shell on a new pseudo terminal and return its pid."""
        raise RuntimeError_("this runtime has no pseudo terminals", code="not_implemented")

    def ptys(self, sandbox_id: str) -> list[PtyInfo]:
        """The sandbox's PTY sessions whose shell still runs, with their current size."""
        raise RuntimeError_("this runtime has no pseudo terminals", code="not_implemented")

    def resize_pty(self, sandbox_id: str, pid: int, cols: int, rows: int) -> None:
        raise RuntimeError_("this runtime has no pseudo terminals", code="not_implemented")

    # --- files -----------------------------------------------------------------------
    @abstractmethod
    def files(self, sandbox_id: str, *, cwd: str | None = None) -> FileStore:
        """The sandbox's file store; relative paths resolve against `cwd`."""

    @abstractmethod
    def host_path(self, sandbox_id: str, path: str, *, must_exist: bool = False) -> Path:
        """The real path behind a sandbox path, after refusing any escape from /workspace.

        Local-only convenience for streaming bytes; a remote driver implements the
        file methods below instead and raises NotImplementedError here.
        """

    @abstractmethod
    def file_info(self, sandbox_id: str, path: str) -> FileEntry: ...

    @abstractmethod
    def list_files(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]: ...

    # --- snapshots, metrics, network ---------------------------------------------------
    @abstractmethod
    def snapshot(self, sandbox_id: str, archive: Path) -> int:
        """Archive the workspace into `archive`; return its size in bytes."""

    @abstractmethod
    def metrics(self, sandbox_id: str) -> Metrics: ...

    @abstractmethod
    def upstream(self, sandbox_id: str, port: int) -> tuple[str, int]:
        """Where port `port` of the sandbox answers, as (host, port) reachable from here."""
