"""The local driver: sandboxes are directories and supervised processes on this machine.

Layout under RUNTIME_ROOT/<sandbox_id>/:
    workspace/        the sandbox's /workspace (bind-mounted there for its processes)
    tmp/              its /tmp
    state/            outside the sandbox's view: sandbox.json, procs/<pid>/ (supervise.py)

As root, each sandbox gets a network namespace (net.py), a cgroup (procgroup.py) and
a private mount namespace per process, so that it has its own ports and sees its
workspace as /workspace. Without root it falls back to the host network and real paths
(README, "Security note on the local runtime"). Everything is read from files, so any
process (web server, worker, tests) can drive any sandbox.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console.runtime import files, proclog
from console.runtime import netns as net
from console.runtime.base import (
    LOG_READ_LIMIT,
    CreateSpec,
    Driver,
    ExecRequest,
    FileEntry,
    FileMissing,
    Metrics,
    OutputEvent,
    PathRefused,
    ProcessInfo,
    ProcessLogs,
    ProcessMissing,
    PtyInfo,
    PtyRequest,
    RuntimeError_,
    RuntimeEvent,
    SandboxMissing,
    VolumeMount,
)
from console.runtime.filestore import LocalFileStore
from console.runtime.procgroup import MARKER_VAR, ProcGroup, cgroup2_mount, marker
from console.runtime.supervise import MAX_OUTPUT_BYTES

log = logging.getLogger(__name__)

SUPERVISOR = str(Path(__file__).with_name("supervise.py"))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def instance_tag(root: Path) -> str:
    """Five hex digits naming this server's runtime root in shared kernel names."""
    return hashlib.sha1(str(root).encode()).hexdigest()[:5]


def _mount_namespaces_work(root: Path) -> bool:
    """Whether processes can get a private mount namespace with /workspace bound in."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    try:
        os.makedirs(files.WORKSPACE, exist_ok=True)
    except OSError:
        return False
    probe = f"mount --make-rprivate / && mount --bind {shlex.quote(str(root))} {files.WORKSPACE}"
    result = subprocess.run(["unshare", "--mount", "sh", "-c", probe], capture_output=True)
    return result.returncode == 0


class LocalDriver(Driver):
    def __init__(
        self,
        root: Path | str,
        subnet: str,
        netns: str = "auto",
        *,
        cgroups: bool = True,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
    ) -> None:
        self.root = Path(root).resolve()
        self.max_output_bytes = max_output_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.subnet = subnet
        self.tag = instance_tag(self.root)
        if netns == "on" and not net.available():
            raise RuntimeError_("RUNTIME_NETNS=on needs root and iproute2 (`ip`)")
        self.use_netns = netns != "off" and net.available()
        cg = cgroup2_mount() if cgroups else None  # off: signals only (tests the fallback)
        self.cgroup_base = cg / f"nullspace-{self.tag}" if cg is not None else None
        self.use_mounts = _mount_namespaces_work(self.root)
        self._spawner = _Spawner()
        self._cpu_samples: dict[str, tuple[float, float]] = {}

    # --- paths and state -------------------------------------------------------------
    def _dir(self, sandbox_id: str) -> Path:
        if not sandbox_id or not set(sandbox_id) <= SANDBOX_ID_CHARS or len(sandbox_id) > 64:
            raise SandboxMissing(f"no sandbox {sandbox_id!r}")
        return self.root / sandbox_id

    def _workspace(self, sandbox_id: str) -> Path:
        return self._dir(sandbox_id) / "workspace"

    def _state(self, sandbox_id: str) -> dict[str, Any]:
        state = proclog.read_json(self._dir(sandbox_id) / "state" / "sandbox.json")
        if state is None:
            raise SandboxMissing(f"sandbox {sandbox_id} has no runtime (destroyed or never made)")
        return state

    def _group(self, sandbox_id: str, state: dict[str, Any] | None = None) -> ProcGroup:
        name = (state or {}).get("network", {}).get("netns")
        cgroup = self.cgroup_base / sandbox_id if self.cgroup_base is not None else None
        return ProcGroup(
            cgroup,
            marker(self.tag, sandbox_id),
            extra_pids=(lambda: net.netns_pids(name)) if name else (lambda: []),
        )

    def _procdir(self, sandbox_id: str, pid: int) -> Path:
        path = self._dir(sandbox_id) / "state" / "procs" / str(int(pid))
        if not (path / "meta.json").exists():
            self._state(sandbox_id)
            raise ProcessMissing(f"no process {pid} in sandbox {sandbox_id}")
        return path

    # --- lifecycle -------------------------------------------------------------------
    def create(self, spec: CreateSpec, *, mounts: Sequence[VolumeMount] = ()) -> dict[str, Any]:
        if mounts:
            raise RuntimeError_(
                "volumes need isolated sandboxes (this server runs RUNTIME_ISOLATION=none)",
                code="invalid_request",
            )
        if spec.layers or (spec.image_suite and spec.image_suite != "bookworm"):
            raise RuntimeError_(
                "custom templates need isolated sandboxes (this server runs "
                "RUNTIME_ISOLATION=none)",
                code="invalid_request",
            )
        base = self._dir(spec.sandbox_id)
        if self.exists(spec.sandbox_id):
            raise RuntimeError_(f"sandbox {spec.sandbox_id} already exists", code="conflict")
        if base.exists():
            self.destroy(spec.sandbox_id)  # what a reboot left of it: start clean
        try:
            for sub in ("workspace", "tmp", "state/procs"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            (base / "tmp").chmod(0o1777)
            if spec.restore_from is not None:
                self._restore(spec.restore_from, base / "workspace")
            network = (
                net.create(self.tag, spec.sandbox_id, self.subnet, str(self.root)).as_dict()
                if self.use_netns
                else {}
            )
            self._group(spec.sandbox_id).create()
        except Exception:
            self.destroy(spec.sandbox_id)
            raise
        state = {
            "sandbox_id": spec.sandbox_id,
            "driver": "local",
            "instance": self.tag,
            "envs": dict(spec.envs),
            "vcpus": spec.vcpus,
            "memory_mb": spec.memory_mb,
            "network": network,
            "isolated_network": bool(network),
            "paused": False,
            "created_at": time.time(),
        }
        self._write_state(spec.sandbox_id, state)
        return {k: state[k] for k in ("driver", "instance", "network", "isolated_network")}

    def _write_state(self, sandbox_id: str, state: dict[str, Any]) -> None:
        path = self._dir(sandbox_id) / "state" / "sandbox.json"
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def destroy(self, sandbox_id: str) -> None:
        base = self._dir(sandbox_id)
        state = proclog.read_json(base / "state" / "sandbox.json") or {}
        network = dict(state.get("network") or {})
        if not network and self.use_netns:
            network = net.leftovers(self.tag).get(sandbox_id, {})
        if network.get("netns"):
            netns_name = network["netns"]
            group = ProcGroup(
                self.cgroup_base / sandbox_id if self.cgroup_base else None,
                marker(self.tag, sandbox_id),
                extra_pids=lambda: net.netns_pids(netns_name),
            )
        else:
            group = self._group(sandbox_id)
        group.kill_all()
        # Then the supervisors (they reaped their children and now only log), so that
        # nothing writes into the directory while it goes away.
        procs = base / "state" / "procs"
        if procs.is_dir():
            for procdir in procs.iterdir():
                meta = proclog.read_json(procdir / "meta.json")
                if meta and meta.get("supervisor_pid"):
                    _kill_supervisor(meta["supervisor_pid"])
        if network:
            net.delete(network)
        self._cpu_samples.pop(sandbox_id, None)
        shutil.rmtree(base, ignore_errors=True)
        if base.exists():  # a file was recreated under us; one more pass
            shutil.rmtree(base, ignore_errors=True)

    def pause(self, sandbox_id: str) -> None:
        state = self._state(sandbox_id)
        self._group(sandbox_id, state).freeze(True)
        self._write_state(sandbox_id, {**state, "paused": True})

    def resume(self, sandbox_id: str) -> None:
        state = self._state(sandbox_id)
        self._group(sandbox_id, state).freeze(False)
        self._write_state(sandbox_id, {**state, "paused": False})

    def is_paused(self, sandbox_id: str) -> bool:
        return bool(self._state(sandbox_id).get("paused"))

    def exists(self, sandbox_id: str) -> bool:
        try:
            state = self._state(sandbox_id)
        except SandboxMissing:
            return False
        name = (state.get("network") or {}).get("netns")
        # After a reboot the directory survives but the namespace does not.
        return name is None or (net.NETNS_DIR / name).exists()

    def reconcile(self, live_sandbox_ids: set[str]) -> list[str]:
        found: set[str] = set()
        for entry in self.root.iterdir():
            if entry.is_dir() and set(entry.name) <= SANDBOX_ID_CHARS:
                found.add(entry.name)
        if self.use_netns:
            found.update(net.leftovers(self.tag))
        if self.cgroup_base is not None and self.cgroup_base.is_dir():
            found.update(p.name for p in self.cgroup_base.iterdir() if p.is_dir())
        removed = sorted(found - set(live_sandbox_ids))
        for sandbox_id in removed:
            try:
                self.destroy(sandbox_id)
            except Exception:
                log.exception("reconcile could not remove sandbox %s", sandbox_id)
        if self.cgroup_base is not None:
            try:
                self.cgroup_base.rmdir()  # only succeeds once no sandbox is left
            except OSError:
                pass
        return removed

    def take_events(self) -> list[RuntimeEvent]:
        found: list[RuntimeEvent] = []
        for events in self.root.glob("*/state/events"):
            for path in sorted(events.glob("*.json")):
                claimed = path.with_suffix(f".taken-{uuid.uuid4().hex}")
                try:
                    os.rename(path, claimed)  # only one taker wins each event
                except OSError:
                    continue
                data = proclog.read_json(claimed) or {}
                claimed.unlink(missing_ok=True)
                kind = str(data.pop("kind", "unknown"))
                found.append(RuntimeEvent(events.parent.parent.name, kind, data))
        return found

    # --- processes -------------------------------------------------------------------
    def _cwd(self, sandbox_id: str, cwd: str | None, default_cwd: str) -> tuple[str, Path]:
        host = files.to_host(self._workspace(sandbox_id), cwd or default_cwd or files.WORKSPACE)
        if not host.is_dir():
            raise PathRefused(
                f"working directory {cwd or default_cwd} does not exist in the sandbox"
            )
        return files.to_sandbox(self._workspace(sandbox_id), host), host

    def _env(self, sandbox_id: str, home: str, cwd: str, *layers: dict[str, str]) -> dict[str, str]:
        # Built from scratch: the server's own environment (secrets) never leaks in.
        env = {
            "PATH": DEFAULT_PATH,
            "HOME": home,
            "USER": "root",
            "LANG": "C.UTF-8",
            "TERM": "xterm-256color",
            "PWD": cwd,
            "NULLSPACE_SANDBOX_ID": sandbox_id,
            "NULLSPACE_SANDBOX": "true",
        }
        for layer in layers:
            env.update({str(k): str(v) for k, v in (layer or {}).items()})
        env[MARKER_VAR] = marker(self.tag, sandbox_id)
        return env

    def start_process(
        self,
        sandbox_id: str,
        request: ExecRequest,
        *,
        default_cwd: str,
        envs: dict[str, str],
        tty: dict[str, Any] | None = None,
    ) -> int:
        state = self._state(sandbox_id)
        workspace = self._workspace(sandbox_id)
        cwd_sandbox, cwd_host = self._cwd(sandbox_id, request.cwd, default_cwd)
        if self.use_mounts:
            cwd, home = cwd_sandbox, files.WORKSPACE
            mounts = [
                [str(workspace), files.WORKSPACE],
                [str(self._dir(sandbox_id) / "tmp"), "/tmp"],
            ]
        else:
            cwd, home, mounts = str(cwd_host), str(workspace), []
        if request.shell:
            shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
            argv = [shell, "-c", request.command, *request.args]
            display = request.command
        else:
            argv = [request.command, *request.args]
            display = shlex.join(argv)
        if not request.command:
            raise RuntimeError_("empty command", code="invalid_request")
        network = state.get("network") or {}
        spec = {
            "argv": argv,
            "display": display,
            "cwd": cwd,
            "env": self._env(sandbox_id, home, cwd, state.get("envs") or {}, envs, request.envs),
            "stdin": getattr(request, "stdin", True),
            "netns_path": str(net.NETNS_DIR / network["netns"]) if network.get("netns") else None,
            "cgroup_procs": self._group(sandbox_id, state).procs_file,
            "mounts": mounts,
            "max_output_bytes": self.max_output_bytes,
        }
        if tty:
            spec["tty"] = tty  # supervise.py runs it on a pseudo terminal
        return self._launch(sandbox_id, spec, display)

    def _launch(
        self,
        sandbox_id: str,
        spec: dict[str, Any],
        display: str,
        files: dict[str, str] | None = None,
    ) -> int:
        """Hand a process spec (and any files it names) to a new supervisor; its pid."""
        procdir = self._dir(sandbox_id) / "state" / "procs" / f".new-{uuid.uuid4().hex}"
        procdir.mkdir()
        for name, text in (files or {}).items():
            (procdir / name).write_text(text)
        (procdir / "spec.json").write_text(json.dumps(spec))
        if spec["stdin"]:
            os.mkfifo(procdir / "stdin", 0o600)
        report = self._spawner.spawn(str(procdir))
        if report.startswith("ok "):
            return int(report.split()[1])
        shutil.rmtree(procdir, ignore_errors=True)
        detail = report.removeprefix("error ").strip() or "the supervisor did not start"
        code = "command_not_found" if _callers_mistake(detail) else "exec_failed"
        raise RuntimeError_(f"could not start {display!r}: {detail}", code=code)

    def wait_process(self, sandbox_id: str, pid: int, timeout: float | None) -> int | None:
        return proclog.wait(self._procdir(sandbox_id, pid), timeout)

    def follow_output(
        self,
        sandbox_id: str,
        pid: int,
        *,
        stop_after: float | None = None,
        stop: threading.Event | None = None,
        tail_bytes: int | None = None,
    ) -> Iterator[OutputEvent]:
        return proclog.follow(self._procdir(sandbox_id, pid), stop_after, stop, tail_bytes)

    def processes(self, sandbox_id: str) -> list[ProcessInfo]:
        self._state(sandbox_id)
        procs = self._dir(sandbox_id) / "state" / "procs"
        found = [proclog.info(p) for p in procs.iterdir() if p.name.isdigit()]
        return sorted((p for p in found if p is not None), key=lambda p: p.pid)

    def process_logs(
        self, sandbox_id: str, pid: int, *, limit: int = LOG_READ_LIMIT
    ) -> ProcessLogs:
        return proclog.logs(self._procdir(sandbox_id, pid), limit)

    def kill_process(self, sandbox_id: str, pid: int) -> None:
        procdir = self._procdir(sandbox_id, pid)
        meta = proclog.read_json(procdir / "meta.json") or {}
        if proclog.exit_code(procdir) is not None or not proclog.is_alive(meta):
            return
        # The process leads its own session and group; SIGKILL also ends a paused one.
        try:
            os.killpg(int(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def write_stdin(self, sandbox_id: str, pid: int, data: bytes) -> None:
        procdir = self._procdir(sandbox_id, pid)
        fifo = procdir / "stdin"
        if proclog.exit_code(procdir) is not None or not fifo.exists():
            raise ProcessMissing(f"process {pid} is not running or has no stdin")
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader, the supervisor is gone
            raise ProcessMissing(f"process {pid} is not reading stdin") from exc
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        finally:
            os.close(fd)

    # --- pseudo terminals -------------------------------------------------------------
    def start_pty(
        self, sandbox_id: str, request: PtyRequest, *, default_cwd: str, envs: dict[str, str]
    ) -> int:
        shell = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
        tty = {"session_id": request.session_id, "cols": request.cols, "rows": request.rows}
        exec_request = ExecRequest(command=shell, cwd=request.cwd, envs=request.envs)
        return self.start_process(
            sandbox_id, exec_request, default_cwd=default_cwd, envs=envs, tty=tty
        )

    def _tty(self, procdir: Path) -> tuple[dict[str, Any], str] | None:
        """meta.json and the terminal of a PTY session that still runs, else None."""
        meta = proclog.read_json(procdir / "meta.json")
        if not meta or not meta.get("tty") or proclog.exit_code(procdir) is not None:
            return None
        return (meta, meta["tty"]) if proclog.is_alive(meta) else None

    def ptys(self, sandbox_id: str) -> list[PtyInfo]:
        self._state(sandbox_id)
        found = []
        for procdir in (self._dir(sandbox_id) / "state" / "procs").iterdir():
            live = self._tty(procdir) if procdir.name.isdigit() else None
            if live is None:
                continue
            try:
                size = _winsize(live[1])
            except OSError:
                continue  # exited since
            meta = live[0]
            found.append(PtyInfo(meta["pty_session_id"], int(meta["pid"]), size[1], size[0]))
        return sorted(found, key=lambda p: p.pid)

    def resize_pty(self, sandbox_id: str, pid: int, cols: int, rows: int) -> None:
        live = self._tty(self._procdir(sandbox_id, pid))
        if live is None:
            raise ProcessMissing(f"process {pid} is not a running PTY session")
        # The kernel tells the terminal's foreground processes (SIGWINCH).
        _winsize(live[1], (rows, cols))

    # --- files -----------------------------------------------------------------------
    def host_path(
        self, sandbox_id: str, path: str, *, must_exist: bool = False, follow_symlinks: bool = True
    ) -> Path:
        self._state(sandbox_id)
        host = files.to_host(self._workspace(sandbox_id), path, follow_symlinks=follow_symlinks)
        if must_exist and not os.path.lexists(host):
            raise FileMissing(f"{files.sandbox_path(path)} does not exist")
        return host

    def files(self, sandbox_id: str, *, cwd: str | None = None) -> LocalFileStore:
        """The workspace only (nothing else of a sandbox is its own without isolation)."""
        self._state(sandbox_id)
        return LocalFileStore(
            str(self._workspace(sandbox_id)), cwd=cwd or files.WORKSPACE, prefix=files.WORKSPACE
        )

    def file_info(self, sandbox_id: str, path: str) -> FileEntry:
        host = self.host_path(sandbox_id, path, follow_symlinks=False)
        return files.entry(host, files.sandbox_path(path))

    def list_files(self, sandbox_id: str, path: str, depth: int = 1) -> list[FileEntry]:
        host = self.host_path(sandbox_id, path)
        return files.listing(self._workspace(sandbox_id), host, max(1, int(depth)))

    # --- snapshots, metrics, network ---------------------------------------------------
    def snapshot(self, sandbox_id: str, archive: Path) -> int:
        self._state(sandbox_id)
        archive = Path(archive)
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp = archive.with_name(f".{archive.name}.{uuid.uuid4().hex}.tmp")
        try:
            with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
                tar.add(self._workspace(sandbox_id), arcname=".")
            os.replace(tmp, archive)
        finally:
            tmp.unlink(missing_ok=True)
        return archive.stat().st_size

    def _restore(self, archive: Path, workspace: Path) -> None:
        if not Path(archive).is_file():
            raise RuntimeError_(f"snapshot archive {archive} is missing", code="snapshot_not_found")
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(workspace, filter="data")  # refuses absolute paths and escapes

    def metrics(self, sandbox_id: str) -> Metrics:
        state = self._state(sandbox_id)
        group = self._group(sandbox_id, state)
        vcpus = max(1, int(state.get("vcpus") or 1))
        now, used = time.monotonic(), group.cpu_seconds()
        last = self._cpu_samples.get(sandbox_id)
        if last is None or not 0.05 <= now - last[0] <= 60:
            time.sleep(0.2)  # no recent sample in this process: measure over a short window
            last = (now, used)
            now, used = time.monotonic(), group.cpu_seconds()
        self._cpu_samples[sandbox_id] = (now, used)
        percent = max(0.0, used - last[1]) / max(now - last[0], 1e-6) / vcpus * 100
        host_if = (state.get("network") or {}).get("host_if")
        rx, tx = net.counters(host_if) if host_if else (None, None)
        return Metrics(
            timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            cpu_percent=round(min(percent, 100.0), 2),
            cpu_count=vcpus,
            mem_used_bytes=group.memory_bytes(),
            mem_total_bytes=int(state.get("memory_mb") or 0) * 1024 * 1024,
            disk_used_bytes=_disk_used(self._workspace(sandbox_id)),
            disk_total_bytes=shutil.disk_usage(self.root).total,
            network_rx_bytes=rx,
            network_tx_bytes=tx,
        )

    def upstream(self, sandbox_id: str, port: int) -> tuple[str, int]:
        state = self._state(sandbox_id)
        addr = (state.get("network") or {}).get("sandbox_addr")
        return (addr or "127.0.0.1", int(port))


# ENOENT, EACCES, ENOEXEC, ENOTDIR from exec (directly, or as crun words them): the
# command or its cwd is the caller's mistake, not the server's.
_CALLER_ERRNOS = ("[Errno 2]", "[Errno 13]", "[Errno 8]", "[Errno 20]")
_CALLER_WORDS = ("not found in $PATH", "No such file or directory", "Permission denied")


def _callers_mistake(detail: str) -> bool:
    return detail.startswith(_CALLER_ERRNOS) or any(w in detail for w in _CALLER_WORDS)


class _Spawner:
    """The supervise.py spawner of this driver, started on first use (and again if it died)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def spawn(self, procdir: str) -> str:
        with self._lock:
            for _attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", SUPERVISOR],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        cwd="/",
                        env={"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"},
                        start_new_session=True,
                    )
                pipe_in, pipe_out = self._proc.stdin, self._proc.stdout
                assert pipe_in is not None and pipe_out is not None  # both are PIPEs above
                try:
                    pipe_in.write(procdir.encode() + b"\n")
                    pipe_in.flush()
                    report = pipe_out.readline().decode().strip()
                except (BrokenPipeError, OSError):
                    report = ""
                if report:
                    return report
                self._proc.kill()
                self._proc.wait()
                self._proc = None
            return "error the process spawner is not answering"


def _kill_supervisor(pid: int) -> None:
    try:
        # Only if the pid still names a supervisor (pids are reused).
        if SUPERVISOR.encode() in Path(f"/proc/{int(pid)}/cmdline").read_bytes():
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _winsize(tty: str, new: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (rows, cols) of a terminal, after setting them to `new` if given."""
    fd = os.open(tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        if new is not None:
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", new[0], new[1], 0, 0))
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    finally:
        os.close(fd)


def _disk_used(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total
