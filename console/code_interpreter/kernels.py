"""A context's Jupyter kernel: started as a process of its sandbox, reached over ZMQ.

The kernel (ipykernel) runs inside the sandbox as the sandbox's default user and binds
its five ports on the sandbox's own address, which the host reaches the way the preview
gateway does, and which no other sandbox can reach (docs/runtime.md, network policy).
The kernel picks its ports and its signing key itself and writes them to its connection
file inside the sandbox; the server reads that file through the runtime's file store
when it connects, so the key never travels in a request, never lands in the database
and is never logged. jupyter_client's KernelClient speaks the protocol.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import shlex
import time
from typing import Any

import zmq
from django.conf import settings
from django.utils import timezone
from jupyter_client.blocking.client import BlockingKernelClient

from console.code_interpreter import kernel_setup
from console.errors import DomainError
from console.models import CodeContext, Sandbox
from console.runtime import get_driver
from console.runtime.base import ExecRequest, RuntimeError_
from console.sandboxes import service as sandboxes

log = logging.getLogger(__name__)

KERNEL_USER = "user"
RUNTIME_DIR = "/home/user/.local/share/jupyter/runtime"
# A cold kernel imports IPython (a second or two); a loaded machine takes longer.
START_TIMEOUT_SECONDS = 90.0
READY_TIMEOUT_SECONDS = 30.0
CONNECTION_FILE_MAX_BYTES = 64 * 1024
# Larger messages make ZMQ drop the connection (the run then ends at its timeout).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Run by the sandbox's python3: the kernel leads a process group of its own, so that
# an interrupt (SIGINT to the group) reaches it and its children and nothing else; and
# the user's site directory is on its path from the start, so that a package installed
# from a run (`!pip install x`, which lands there as the user) imports in the next one.
_LAUNCHER = (
    "import os, site, sys\n"
    "try:\n"
    "    os.setsid()\n"
    "except OSError:\n"
    "    pass\n"
    "user_site = site.getusersitepackages()\n"
    "os.makedirs(user_site, exist_ok=True)\n"
    "if user_site not in sys.path:\n"
    "    site.addsitedir(user_site)\n"
    "from ipykernel import kernelapp\n"
    "kernelapp.launch_new_instance()\n"
)


class KernelUnavailable(DomainError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            "code_interpreter_unavailable",
            f"This sandbox cannot run a Jupyter kernel: {detail}",
            suggested_action=(
                "Create the sandbox from the code-interpreter template "
                "(nullspace sandbox create --template code-interpreter), "
                "or install ipykernel in it (pip install ipykernel)."
            ),
        )


def connection_path(context: CodeContext) -> str:
    return f"{RUNTIME_DIR}/nullspace-{context.public_id}.json"


# kernel_pid while one request starts the kernel (the others wait for it).
STARTING = -1


def is_running(context: CodeContext) -> bool:
    if context.kernel_pid <= 0:
        return False
    try:
        code = get_driver().wait_process(context.sandbox.runtime_id, context.kernel_pid, 0)
    except RuntimeError_:
        return False
    return code is None


def ensure_started(context: CodeContext) -> None:
    """Start the context's kernel unless it runs (a new context, a lost one). Requests
    arriving together start one kernel: the one that claims the row starts it."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        context.refresh_from_db(fields=["kernel_pid", "connection_file", "kernel_started_at"])
        if is_running(context):
            _wait_for_connection_file(context)  # started by another request a moment ago
            return
        starting_since = context.kernel_started_at
        stale = (
            starting_since is None
            or (timezone.now() - starting_since).total_seconds() > START_TIMEOUT_SECONDS
        )
        if context.kernel_pid == STARTING and not stale:
            if time.monotonic() > deadline:
                raise DomainError("kernel_start_failed", "The kernel did not start")
            time.sleep(0.1)
            continue
        claimed = CodeContext.objects.filter(pk=context.pk, kernel_pid=context.kernel_pid).update(
            kernel_pid=STARTING, kernel_started_at=timezone.now()
        )
        if claimed:
            start(context)
            return


def start(context: CodeContext) -> None:
    sandbox: Sandbox = context.sandbox
    sandboxes.require_running(sandbox)
    if settings.RUNTIME_ISOLATION == "none":
        # A kernel there would be a host process with the host's home directories.
        raise DomainError(
            "code_interpreter_unavailable",
            "The code interpreter needs isolated sandboxes; this server runs them without "
            "isolation (RUNTIME_ISOLATION=none)",
        )
    driver = get_driver()
    address = driver.upstream(sandbox.runtime_id, 0)[0]
    path = connection_path(context)
    files = driver.files(sandbox.runtime_id)
    try:
        files.remove(path)  # a stale file would hand out the ports of a dead kernel
    except RuntimeError_:
        pass
    command = (
        f"umask 077 && mkdir -p {shlex.quote(RUNTIME_DIR)} && exec python3 -c "
        f"{shlex.quote(_LAUNCHER)} -f {shlex.quote(path)} --ip={shlex.quote(address)} "
        "--HistoryManager.enabled=False"
    )
    request = ExecRequest(
        command=command,
        shell=True,
        cwd=context.cwd,
        timeout_secs=None,
        stdin=False,
        user=KERNEL_USER,
    )
    try:
        pid = sandboxes.driver_call(
            lambda: driver.start_process(
                sandbox.runtime_id, request, default_cwd=sandbox.cwd, envs=dict(sandbox.envs)
            )
        )
    except BaseException:
        CodeContext.objects.filter(pk=context.pk).update(kernel_pid=0)
        raise
    context.kernel_pid = pid
    context.connection_file = path
    context.kernel_started_at = timezone.now()
    context.save(update_fields=["kernel_pid", "connection_file", "kernel_started_at"])
    try:
        _wait_for_connection_file(context)
        _set_up(context)
    except BaseException:
        stop(context)
        raise


def _set_up(context: CodeContext) -> None:
    """Run kernel_setup.SOURCE in the new kernel, silently, before any run of the user."""
    client = connect(context)
    try:
        msg_id = client.execute(
            kernel_setup.SOURCE, silent=True, store_history=False, allow_stdin=False
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            try:
                reply = client.get_shell_msg(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return
        log.warning("the set-up of kernel %s did not answer", context.public_id)
    finally:
        client.stop_channels()


def _wait_for_connection_file(context: CodeContext) -> None:
    driver = get_driver()
    sandbox_id = context.sandbox.runtime_id
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    delay = 0.02
    while time.monotonic() < deadline:
        if _read_connection(context) is not None:
            return
        code = sandboxes.driver_call(lambda: driver.wait_process(sandbox_id, context.kernel_pid, 0))
        if code is not None:
            logs = driver.process_logs(sandbox_id, context.kernel_pid, limit=8192)
            detail = (logs.stderr or logs.stdout).strip().splitlines()
            last = detail[-1] if detail else f"the kernel exited with code {code}"
            if "No module named" in last:
                raise KernelUnavailable("ipykernel is not installed")
            raise DomainError("kernel_start_failed", f"The kernel did not start: {last[:300]}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)
    raise DomainError(
        "kernel_start_failed",
        f"The kernel did not start within {START_TIMEOUT_SECONDS:g} s",
        retryable=True,
    )


def _read_connection(context: CodeContext) -> dict[str, Any] | None:
    """The kernel's connection info (ports and key), once the kernel has written it."""
    files = get_driver().files(context.sandbox.runtime_id)
    try:
        with files.open_read(context.connection_file or connection_path(context)) as fh:
            raw = fh.read(CONNECTION_FILE_MAX_BYTES + 1)
    except RuntimeError_:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None  # still being written
    if not isinstance(info, dict) or not info.get("key") or not info.get("shell_port"):
        return None
    return info


@functools.cache
def _zmq_context() -> zmq.Context[Any]:
    """One ZMQ context for every kernel client of this process, whose sockets refuse a
    message larger than MAX_MESSAGE_BYTES: the kernel runs the sandbox's code, and a
    message is read whole into our memory before anything can look at its size."""
    context: zmq.Context[Any] = zmq.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    return context


def connect(context: CodeContext, *, ready: bool = True) -> BlockingKernelClient:
    """A client on the running kernel; with `ready`, one whose IOPub subscription is known
    to work (what a run needs; an interrupt needs only the control channel)."""
    info = _read_connection(context)
    if info is None:
        raise DomainError("kernel_unavailable", "The context's kernel is not running")
    # Always the address the runtime says reaches this sandbox, whatever the file says.
    info["ip"] = get_driver().upstream(context.sandbox.runtime_id, 0)[0]
    client = BlockingKernelClient(context=_zmq_context())
    client.load_connection_info(info)  # type: ignore[arg-type]
    client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
    try:
        if ready:
            _wait_ready(client)
    except BaseException:
        client.stop_channels()
        raise
    return client


def _wait_ready(client: BlockingKernelClient) -> None:
    """Ask for kernel_info until its IOPub status arrives: a ZMQ subscription drops what
    is published before it is in place, so output could otherwise be lost. Asked on the
    control channel, which the kernel answers even while a cell runs (shell requests wait
    for it: a run queued behind another must not time out here)."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        request = client.session.msg("kernel_info_request", {})
        client.control_channel.send(request)
        msg_id = request["header"]["msg_id"]
        round_end = min(time.monotonic() + 1.0, deadline)
        while time.monotonic() < round_end:
            try:
                msg = client.get_iopub_msg(timeout=max(0.01, round_end - time.monotonic()))
            except queue.Empty:
                break
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return
    raise DomainError(
        "kernel_unavailable",
        f"The kernel did not answer within {READY_TIMEOUT_SECONDS:g} s",
        retryable=True,
    )


def interrupt(context: CodeContext) -> None:
    """Interrupt what the kernel runs (Jupyter's interrupt_request, on the control channel)."""
    if not is_running(context):
        return
    client = connect(context, ready=False)
    try:
        msg = client.session.msg("interrupt_request", {})
        client.control_channel.send(msg)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                reply = client.control_channel.get_msg(
                    timeout=max(0.01, deadline - time.monotonic())
                )
            except queue.Empty:
                break
            if reply.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"]:
                break
    finally:
        client.stop_channels()


def stop(context: CodeContext) -> None:
    """End the kernel process (its state is gone) and forget its connection file."""
    if context.kernel_pid > 0:
        driver = get_driver()
        sandbox_id = context.sandbox.runtime_id
        try:
            driver.kill_process(sandbox_id, context.kernel_pid)
            driver.wait_process(sandbox_id, context.kernel_pid, 10)
        except RuntimeError_ as exc:
            log.info("kernel of %s already gone: %s", context.public_id, exc)
        try:
            driver.files(sandbox_id).remove(context.connection_file or connection_path(context))
        except RuntimeError_:
            pass
    context.kernel_pid = 0
    context.kernel_started_at = None
    # An update, not a save: the context may have been removed meanwhile.
    CodeContext.objects.filter(pk=context.pk).update(kernel_pid=0, kernel_started_at=None)
