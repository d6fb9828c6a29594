"""Supervisor of one sandbox process: runs it, keeps its output and exit code in files.

Run as `python -I -S supervise.py` (stdlib only; never imports Django): a spawner that
reads procdirs on stdin and forks one detached supervisor for each, so that the process
outlives, and is not a child of, the web server or worker that started it. Everything
a caller needs later lives in <procdir>:

    spec.json   what to run (written by the driver)
    meta.json   pid, command, start time, supervisor pid (written here once started)
    stdin       a FIFO the process reads; any process may write to it
    stdout      raw stdout bytes
    stderr      raw stderr bytes
    output      both streams interleaved, as frames: kind (b"o"|b"e"), 4-byte length, data
    exit.json   {"exit_code": int, ...}, written atomically once the process has exited
                and its output up to then is in the files above

With spec["tty"] ({"session_id", "cols", "rows"}) the process runs on a pseudo terminal
of its own (a PTY session): what arrives on the stdin FIFO goes to the terminal, all
it prints is logged as stdout, and meta.json names the terminal ("tty") for resizing.

With spec["crun"] the process runs inside an isolated sandbox: `crun exec --detach`
starts it in the sandbox's namespaces and cgroup and exits at once; the supervisor is a
child subreaper, so the process becomes its child and its exit status is ours to read.
For a PTY session crun makes the terminal inside the sandbox and hands its master end
over a console socket.

The driver reads these files from any process (console/runtime/proclog.py).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import IO, Any, BinaryIO, Protocol

CLONE_NEWNS = 0x00020000
MNT_DETACH = 2
PR_SET_CHILD_SUBREAPER = 36
TIOCGPTPEER = 0x5441
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
# Output kept per process unless spec["max_output_bytes"] says otherwise; beyond it the
# stream is still drained but not stored: one b"t" frame marks the cut, and exit.json
# counts what was dropped (docs/limits.md).
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
TRUNCATED = b"t"


class OutputLog:
    """Writes output to the log files up to a byte cap, then counts what it drops."""

    def __init__(self, logs: dict[str, int], cap: int) -> None:
        self.logs = logs
        self.cap = cap
        self.stored = 0
        self.dropped = 0

    def write(self, kind: bytes, raw_fd: int, data: bytes) -> None:
        room = self.cap - self.stored
        kept = data[: max(room, 0)]
        if kept:
            os.write(raw_fd, kept)
            os.write(self.logs["output"], frame(kind, kept))
            self.stored += len(kept)
        if len(kept) < len(data):
            if self.dropped == 0:
                os.write(self.logs["output"], frame(TRUNCATED, b""))
            self.dropped += len(data) - len(kept)

    def dropped_fields(self) -> dict[str, int]:
        """What exit.json says about output past the cap (nothing when none was)."""
        if not self.dropped:
            return {}
        return {"output_dropped_bytes": self.dropped, "output_limit_bytes": self.cap}


def frame(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack(">I", len(data)) + data


def _write_json(path: str, value: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(value, fh)
    os.replace(tmp, path)


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks; with the pid it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def _enter_sandbox(spec: dict[str, Any], libc: ctypes.CDLL) -> None:
    """Runs in the child between fork and exec: cgroup, network and mount namespace, cwd."""

    def check(result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    if spec.get("cgroup_procs"):
        with open(spec["cgroup_procs"], "w") as fh:
            fh.write("0")
    if spec.get("netns_path"):
        fd = os.open(spec["netns_path"], os.O_RDONLY)
        check(libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
    if spec.get("mounts"):
        check(libc.unshare(CLONE_NEWNS), "unshare")
        check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount private")
        # Volume sources are opened first: the /tmp bind below would hide one under /tmp.
        volumes = [(v, _open_beneath_no_links(v["source"])) for v in spec.get("volumes") or ()]
        for source, target in spec["mounts"]:
            check(
                libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None),
                f"bind {target}",
            )
        for volume, fd in volumes:
            _bind_volume(volume, fd, libc, check)
    os.chdir(spec["cwd"])


def _open_beneath_no_links(path: str) -> int:
    """An O_PATH fd of `path`, opened one component at a time without following any
    symlink: a link planted inside a volume cannot redirect the bind elsewhere."""
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p]:
            if part in (".", ".."):
                raise OSError(22, f"volume source {path!r} is not a plain path")
            child = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _bind_volume(
    volume: dict[str, Any], fd: int, libc: ctypes.CDLL, check: Callable[[int, str], None]
) -> None:
    """Bind a volume directory (open as `fd`) at its target; read-only through a ro bind
    remount."""
    target = volume["target"]
    try:
        os.makedirs(target, mode=0o755, exist_ok=True)
        source = f"/proc/self/fd/{fd}".encode()
        check(libc.mount(source, target.encode(), None, MS_BIND, None), f"bind {target}")
    finally:
        os.close(fd)
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV
    if volume.get("read_only"):
        flags |= MS_RDONLY
    check(libc.mount(None, target.encode(), None, flags, None), f"remount {target}")


LIBC = ctypes.CDLL(None, use_errno=True)


def _spawn(spec: dict[str, Any], stdin_fd: int) -> subprocess.Popen[bytes]:
    libc = LIBC
    return subprocess.Popen(
        spec["argv"],
        stdin=stdin_fd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=spec["env"],
        start_new_session=True,
        preexec_fn=lambda: _enter_sandbox(spec, libc),
    )


def _spawn_tty(spec: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int, str]:
    """Start the process on a new pseudo terminal; return it, the master fd and the tty path."""
    libc = LIBC
    master, slave = os.openpty()
    size = struct.pack("HHHH", int(spec["tty"]["rows"]), int(spec["tty"]["cols"]), 0, 0)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, size)

    def enter() -> None:
        _enter_sandbox(spec, libc)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: the terminal becomes ours

    try:
        child = subprocess.Popen(
            spec["argv"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=spec["env"],
            start_new_session=True,
            preexec_fn=enter,
        )
        return child, master, os.ttyname(slave)
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)


class _Child(Protocol):
    """What _pump needs of a process: a Popen or an _Adopted one."""

    pid: int
    returncode: int | None

    @property
    def stdout(self) -> IO[bytes] | None: ...

    @property
    def stderr(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class _Adopted:
    """A process that is our child by adoption (crun exec --detach), Popen-shaped for _pump."""

    def __init__(
        self, pid: int, stdout: BinaryIO | None = None, stderr: BinaryIO | None = None
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def _status(self, flags: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = -9  # reaped elsewhere: report it as killed
            return self.returncode
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._status(os.WNOHANG)

    def wait(self) -> int:
        code = self._status(0)
        assert code is not None
        return code


def _hide_unified() -> None:
    """In the crun child: a private mount namespace without the v2 hierarchy (crun.py)."""
    if LIBC.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    LIBC.umount2(b"/sys/fs/cgroup/unified", MNT_DETACH)


def _crun_exec(spec: dict[str, Any], procdir: str, stdio: tuple[int, int, int]) -> int:
    """Run crun exec --detach with the given stdio; return the sandboxed process's host pid."""
    crun = spec["crun"]
    pid_file = f"{procdir}/container.pid"
    argv = [
        *crun["base"],
        "--log",
        f"file:{procdir}/crun.log",
        "exec",
        "--detach",
        "--process",
        f"{procdir}/process.json",
        "--pid-file",
        pid_file,
        *crun.get("extra", []),
        crun["container"],
    ]
    helper = subprocess.Popen(
        argv,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
        cwd="/",
        start_new_session=True,
        preexec_fn=_hide_unified if crun.get("hide_unified") else None,
    )
    code = helper.wait()
    if code != 0:
        try:
            with open(f"{procdir}/crun.log") as fh:
                detail = fh.read().strip().splitlines()[-1:] or [""]
        except OSError:
            detail = [""]
        raise OSError(errno.EINVAL, f"crun exec failed ({code}): {detail[0][-300:]}")
    with open(pid_file) as fh:
        return int(fh.read().strip())


def _spawn_crun(spec: dict[str, Any], procdir: str, stdin_fd: int) -> _Adopted:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid = _crun_exec(spec, procdir, (stdin_fd, out_w, err_w))
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return _Adopted(pid, os.fdopen(out_r, "rb", 0), os.fdopen(err_r, "rb", 0))


def _spawn_crun_tty(spec: dict[str, Any], procdir: str) -> tuple[_Adopted, int, str]:
    """crun makes the terminal inside the sandbox; its master end comes over a socket."""
    import array
    import socket

    path = spec["crun"].get("console_socket") or f"{procdir}/console.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(10)
    devnull = os.open(os.devnull, os.O_RDWR)
    crun = dict(spec["crun"])
    crun["extra"] = ["--console-socket", path]
    try:
        pid = _crun_exec({**spec, "crun": crun}, procdir, (devnull, devnull, devnull))
        conn, _ = server.accept()
        with conn:
            fds = array.array("i")
            _msg, ancdata, _flags, _addr = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not fds:
            raise OSError(errno.EIO, "crun sent no terminal")
    finally:
        server.close()
        os.close(devnull)
        try:
            os.unlink(path)
        except OSError:
            pass
    master = fds[0]
    size = struct.pack("HHHH", int(spec["tty"]["rows"]), int(spec["tty"]["cols"]), 0, 0)
    fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    # Our handle on the terminal for resizing from other processes (driver.resize_pty).
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    return _Adopted(pid), master, f"/proc/{os.getpid()}/fd/{slave}"


def _oom_kills(path: str | None) -> int:
    """The cgroup's OOM kill count (v1 memory.oom_control or v2 memory.events)."""
    if not path:
        return 0
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _report_event(procdir: str, kind: str, data: dict[str, Any]) -> None:
    """Leave an event for the driver to hand out (state/events/, next to procs/)."""
    events = os.path.join(os.path.dirname(os.path.dirname(procdir)), "events")
    try:
        os.makedirs(events, exist_ok=True)
        _write_json(f"{events}/{kind}-{time.time_ns()}.json", {"kind": kind, **data})
    except OSError:
        pass


def _open_logs(procdir: str) -> dict[str, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return {
        name: os.open(f"{procdir}/{name}", flags, 0o600) for name in ("stdout", "stderr", "output")
    }


def _pump(
    child: _Child,
    procdir: str,
    logs: dict[str, int],
    out: OutputLog,
    on_exit: Callable[[int], dict[str, Any]],
) -> None:
    assert child.stdout is not None and child.stderr is not None  # pipes, see _spawn*
    raw = {
        child.stdout.fileno(): (b"o", logs["stdout"]),
        child.stderr.fileno(): (b"e", logs["stderr"]),
    }
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    for fd in raw:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    open_fds = set(raw)

    def read_ready(timeout: float | None) -> None:
        for key, _ in sel.select(timeout):
            fd = key.fd
            if fd == wake_r:
                os.read(wake_r, 512)
                continue
            data = os.read(fd, 65536)
            if not data:
                sel.unregister(fd)
                open_fds.discard(fd)
                continue
            kind, raw_fd = raw[fd]
            out.write(kind, raw_fd, data)

    while open_fds and child.poll() is None:
        read_ready(0.5)  # SIGCHLD wakes the select through the wakeup fd
    if child.poll() is None:
        child.wait()  # closed its pipes but still running
    else:
        # Take what the process wrote before it exited, then publish the exit code.
        deadline = time.monotonic() + 0.05
        while open_fds and time.monotonic() < deadline:
            read_ready(0.01)
    code = child.wait()  # reaped above; this only reads the status
    if code < 0:
        code = 128 - code  # killed by a signal, reported as a shell does
    _write_json(f"{procdir}/exit.json", on_exit(code))
    # Children that kept the pipes open (daemons) still get their output logged.
    while open_fds:
        read_ready(None)


def _pump_tty(child: _Child, master: int, stdin_fd: int, out: OutputLog) -> int:
    """Terminal output to the logs, the stdin FIFO to the terminal, until the process exits."""
    os.set_blocking(master, False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sel = selectors.DefaultSelector()
    sel.register(master, selectors.EVENT_READ)
    sel.register(stdin_fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    typed = b""  # input the terminal has not taken yet (never block on a full terminal)

    def step(timeout: float) -> bool:
        """One round of the loop; False once the terminal is closed on the other side."""
        nonlocal typed
        for key, mask in sel.select(timeout):
            if key.fd == wake_r:
                os.read(wake_r, 512)
            elif key.fd == stdin_fd and len(typed) < 1 << 20:
                typed += os.read(stdin_fd, 65536)
            elif key.fd == master and mask & selectors.EVENT_WRITE and typed:
                try:
                    typed = typed[os.write(master, typed) :]
                except BlockingIOError:
                    pass
            elif key.fd == master and mask & selectors.EVENT_READ:
                try:
                    data = os.read(master, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:  # EIO: no process holds the terminal any more
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    return False
                out.write(b"o", out.logs["stdout"], data)
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if typed else 0)
        sel.modify(master, events)
        return True

    while child.poll() is None and step(0.5):
        pass
    deadline = time.monotonic() + 0.1  # what it printed just before exiting
    while time.monotonic() < deadline and step(0.01):
        pass
    code = child.wait()
    os.close(master)  # hangs up on anything it left running on the terminal
    return 128 - code if code < 0 else int(code)


def supervise(procdir: str, report_fd: int) -> None:
    """Start the process described in procdir, report `ok <pid>` or `error <why>` on
    report_fd, then keep its output until it ends. Runs in its own session."""
    os.setsid()
    with open(f"{procdir}/spec.json") as fh:
        spec = json.load(fh)
    if spec.get("stdin"):
        stdin_fd = os.open(f"{procdir}/stdin", os.O_RDWR)  # RDWR: never EOF, never blocks
    else:
        stdin_fd = os.open(os.devnull, os.O_RDONLY)
    tty = None
    child: _Child
    oom_before = _oom_kills(spec.get("oom_file"))
    try:
        if spec.get("crun"):
            prctl = LIBC.prctl
            prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        if spec.get("tty"):
            if spec.get("crun"):
                child, master, tty = _spawn_crun_tty(spec, procdir)
            else:
                child, master, tty = _spawn_tty(spec)
        elif spec.get("crun"):
            child = _spawn_crun(spec, procdir, stdin_fd)
        else:
            child = _spawn(spec, stdin_fd)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        os.write(report_fd, f"error {exc}\n".encode())
        return
    if tty is None:
        os.close(stdin_fd)
    final = os.path.join(os.path.dirname(procdir), str(child.pid))
    if os.path.lexists(final):  # a pid reused after an old process of this sandbox
        os.rename(final, f"{final}.old{time.time_ns()}")
    os.rename(procdir, final)
    logs = _open_logs(final)  # before meta.json: readers find the logs once it exists
    _write_json(
        f"{final}/meta.json",
        {
            "pid": child.pid,
            "command": spec["display"],
            "started_at": time.time(),
            "start_ticks": _start_ticks(child.pid),
            "supervisor_pid": os.getpid(),
            **({"tty": tty, "pty_session_id": spec["tty"]["session_id"]} if tty else {}),
        },
    )
    os.write(report_fd, f"ok {child.pid}\n".encode())
    os.close(report_fd)
    out = OutputLog(logs, int(spec.get("max_output_bytes") or MAX_OUTPUT_BYTES))

    def on_exit(code: int) -> dict[str, Any]:
        result = {"exit_code": code, "finished_at": time.time(), **out.dropped_fields()}
        if code == 137 and _oom_kills(spec.get("oom_file")) > oom_before:
            result["oom"] = True  # killed by the kernel for going over memory_mb
            _report_event(final, "oom", {"pid": child.pid, "command": spec["display"]})
        return result

    if tty is None:
        _pump(child, final, logs, out, on_exit)
        return
    code = _pump_tty(child, master, stdin_fd, out)
    _write_json(f"{final}/exit.json", on_exit(code))


def _detached(procdir: str, report_fd: int) -> None:
    """Fork twice so that the supervisor is adopted by init, never a caller's child."""
    if os.fork() > 0:
        return
    try:
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            try:
                supervise(procdir, report_fd)
            except BaseException as exc:  # noqa: BLE001 - report, never raise into a fork
                try:
                    os.write(report_fd, f"error {exc!r}\n".encode())
                except OSError:
                    pass
    finally:
        os._exit(0)


def serve() -> None:
    """Spawner: read one procdir per line on stdin, answer its report line on stdout.

    Forking this preloaded, single-threaded process costs a few milliseconds where a
    fresh interpreter per process would cost tens. It exits when its driver does."""
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in stdin:
        procdir = line.decode().strip()
        if not procdir:
            continue
        read_fd, write_fd = os.pipe()
        _detached(procdir, write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as reader:
            report = reader.readline() or b"error the supervisor died before starting\n"
        os.wait()  # the first fork, which exits at once
        stdout.write(report)
        stdout.flush()


if __name__ == "__main__":
    serve()
