"""The SSH relay: a TCP port per sandbox with SSH access, forwarded to its sshd.

The 0.1.9 client runs plain `ssh -p PORT USER@HOST` (no ProxyCommand), so what it
connects to must speak SSH itself. SSH carries no host name a single port could route
on, so each sandbox with live access gets a port of its own from SSH_RELAY_PORTS, and
the bytes go unchanged to port 22 of the sandbox: the sandbox's sshd checks the
certificate, end to end (docs/ssh.md).

The relay admits a connection only while the sandbox is running and holds an unexpired
certificate; a sweep closes the port of a sandbox that has neither, and cuts the open
connections of a sandbox that is gone. It runs on an event loop of its own in a
daemon thread of the process that issued the access (the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from console.errors import DomainError

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10.0
SWEEP_SECONDS = 10.0
CHUNK_BYTES = 64 * 1024
LINGER_SECONDS = 10.0
KEEPALIVE_IDLE_SECONDS = 60
KEEPALIVE_INTERVAL_SECONDS = 15
KEEPALIVE_PROBES = 4


class RelayBusy(DomainError):
    """Every port of SSH_RELAY_PORTS is taken: a 503 a client may retry."""

    def __init__(self, message: str) -> None:
        super().__init__("runtime_unavailable", message, retryable=True)


@dataclass
class _Listener:
    sandbox_id: str
    port: int
    server: asyncio.Server


@dataclass(frozen=True)
class Admission:
    """What the relay may forward to, when a sandbox may be reached at all."""

    host: str
    port: int


def admit(sandbox_public_id: str) -> Admission | None:
    """The sandbox's sshd address if it is running with an unexpired certificate."""
    from console.models import Sandbox, SandboxStatus, SshAccess
    from console.runtime import get_driver

    close_old_connections()
    try:
        sandbox = Sandbox.objects.filter(public_id=sandbox_public_id).first()
        if sandbox is None or sandbox.status != SandboxStatus.RUNNING:
            return None
        live = SshAccess.objects.filter(sandbox=sandbox, expires_at__gt=timezone.now()).exists()
        if not live:
            return None
        host, port = get_driver().upstream(sandbox.runtime_id, 22)
        return Admission(host, port)
    except Exception as exc:  # the sandbox vanished between the checks, or the runtime did
        log.info("ssh relay: %s not admitted: %s", sandbox_public_id, exc)
        return None
    finally:
        connection.close()


class Relay:
    def __init__(
        self,
        admit_fn: Callable[[str], Admission | None] | None = None,
        running_fn: Callable[[str], bool] | None = None,
    ) -> None:
        # What the database says; tests of the relay alone pass their own answers.
        self._admit = admit_fn or admit
        self._running = running_fn or still_running
        self._listeners: dict[str, _Listener] = {}
        # Open connections by sandbox, kept apart from the ports: a session outlives the
        # port that expired access closed, and is still cut when its sandbox goes.
        self._connections: dict[str, set[asyncio.Task[None]]] = {}
        self._opening = asyncio.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ssh-relay", daemon=True)
        self._thread.start()

    # --- called from other threads ------------------------------------------------------

    def open(self, sandbox_id: str, *, prefer: int | None = None) -> int:
        """The relay port of the sandbox, opening one if it has none (`prefer` first)."""
        return self._call(self._open(sandbox_id, prefer))

    def stop(self) -> None:
        """Close every port, cut every connection, end the relay's thread."""
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    # --- on the relay's loop -------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.create_task(self._sweep_forever())
        self._loop.run_forever()

    async def _open(self, sandbox_id: str, prefer: int | None) -> int:
        async with self._opening:  # two accesses at once must not get two ports
            return await self._open_unlocked(sandbox_id, prefer)

    async def _open_unlocked(self, sandbox_id: str, prefer: int | None) -> int:
        existing = self._listeners.get(sandbox_id)
        if existing is not None:
            return existing.port
        low, high = settings.SSH_RELAY_PORTS
        count = high - low + 1
        # Start at a place of the range that depends on the sandbox, so servers sharing a
        # machine rarely race for the same port, then take the first one free.
        start = zlib.crc32(sandbox_id.encode()) % count
        if prefer is not None and low <= prefer <= high:
            start = prefer - low
        used = {listener.port for listener in self._listeners.values()}
        for step in range(count):
            port = low + (start + step) % count
            if port in used:
                continue
            try:
                server = await asyncio.start_server(
                    functools.partial(self._accept, sandbox_id),
                    host=settings.SSH_RELAY_BIND,
                    port=port,
                    reuse_address=True,
                )
            except OSError:
                continue
            self._listeners[sandbox_id] = _Listener(sandbox_id, port, server)
            log.info("ssh relay: %s on port %d", sandbox_id, port)
            return port
        raise RelayBusy(f"every SSH relay port ({low}-{high}) is in use")

    async def _shutdown(self) -> None:
        for sandbox_id in list(self._listeners):
            await self._close(sandbox_id, cut=True)
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close(self, sandbox_id: str, *, cut: bool) -> None:
        listener = self._listeners.pop(sandbox_id, None)
        if listener is not None:
            listener.server.close()
            log.info("ssh relay: closed port %d of %s", listener.port, sandbox_id)
        if cut:
            for task in list(self._connections.pop(sandbox_id, ())):
                task.cancel()

    async def _accept(
        self, sandbox_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        connections = self._connections.setdefault(sandbox_id, set())
        if task is None or len(connections) >= settings.SSH_RELAY_MAX_CONNECTIONS:
            log.info("ssh relay: %s has too many connections", sandbox_id)
            writer.close()
            return
        connections.add(task)
        try:
            await self._forward(sandbox_id, reader, writer)
        except asyncio.CancelledError:
            pass
        finally:
            connections.discard(task)
            if not connections and self._connections.get(sandbox_id) is connections:
                del self._connections[sandbox_id]
            with contextlib.suppress(Exception):
                writer.close()

    async def _forward(
        self, sandbox_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        target = await asyncio.to_thread(self._admit, sandbox_id)
        if target is None:
            return  # closed without a word: the client sees "Connection closed"
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(target.host, target.port), CONNECT_TIMEOUT_SECONDS
            )
        except (OSError, TimeoutError) as exc:
            log.info("ssh relay: %s sshd unreachable: %s", sandbox_id, exc)
            return
        for side in (writer, up_writer):
            _keep_alive(side)
        directions = {
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        }
        try:
            # One side ended: the other gets a moment for its last bytes, not forever (a
            # client that vanished never sends its end).
            _, pending = await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending, timeout=LINGER_SECONDS)
        finally:
            for task in directions:
                task.cancel()
            await asyncio.gather(*directions, return_exceptions=True)
            with contextlib.suppress(Exception):
                up_writer.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            for sandbox_id in set(self._listeners) | set(self._connections):
                try:
                    await self._sweep(sandbox_id)
                except Exception:
                    log.exception("ssh relay: sweeping %s failed", sandbox_id)

    async def _sweep(self, sandbox_id: str) -> None:
        if await asyncio.to_thread(self._admit, sandbox_id) is not None:
            return
        gone = not await asyncio.to_thread(self._running, sandbox_id)
        # Expired access: no new connections, sessions already in may finish. A sandbox
        # that is gone: its sessions end now.
        await self._close(sandbox_id, cut=gone)


def still_running(sandbox_public_id: str) -> bool:
    from console.models import Sandbox, SandboxStatus

    close_old_connections()
    try:
        return Sandbox.objects.filter(
            public_id=sandbox_public_id, status=SandboxStatus.RUNNING
        ).exists()
    finally:
        connection.close()


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """TCP keepalives: a peer that vanished without a word is noticed in minutes."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


def restore() -> int:
    """At server start: reopen the ports of this server's running sandboxes that still
    hold unexpired access, each on the port it had, so printed commands stay valid.
    Returns how many were reopened; the relay is not started when there are none."""
    from console.models import SandboxStatus, SshAccess
    from console.sandboxes.owner import this_instance

    rows = (
        SshAccess.objects.filter(
            expires_at__gt=timezone.now(),
            sandbox__status=SandboxStatus.RUNNING,
            sandbox__owner__in=[this_instance(), ""],
        )
        .order_by("-created_at")
        .values_list("sandbox__public_id", "port")
    )
    ports: dict[str, int | None] = {}
    for sandbox_id, port in rows[: settings.SSH_RELAY_PORTS[1] - settings.SSH_RELAY_PORTS[0] + 1]:
        ports.setdefault(sandbox_id, port)
    for sandbox_id, port in ports.items():
        try:
            relay().open(sandbox_id, prefer=port)
        except RelayBusy:
            log.warning("ssh relay: no port left to reopen %s", sandbox_id)
            break
    return len(ports)


_relay: Relay | None = None
_relay_lock = threading.Lock()


def relay() -> Relay:
    """This process's relay, started on first use."""
    global _relay
    with _relay_lock:
        if _relay is None:
            _relay = Relay()
        return _relay
