"""The SSH relay alone (console/ssh/relay.py), with real sockets on loopback: a TCP echo
server stands in for a sandbox's sshd, and the admission answers (what the database
would say) are the test's. The whole path with sshd: tests/console/test_cli_ssh.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from console.ssh.relay import Admission, Relay, RelayBusy
from tests.live import free_port


@pytest.fixture
def echo() -> Iterator[int]:
    """A TCP server on loopback that echoes every byte and closes after the peer does."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


class World:
    """What the relay asks about sandboxes: admitted ones and running ones."""

    def __init__(self, echo_port: int) -> None:
        self.admitted: set[str] = set()
        self.running: set[str] = set()
        self.echo_port = echo_port

    def admit(self, sandbox_id: str) -> Admission | None:
        return Admission("127.0.0.1", self.echo_port) if sandbox_id in self.admitted else None

    def still_running(self, sandbox_id: str) -> bool:
        return sandbox_id in self.running


@pytest.fixture
def world(echo) -> World:
    return World(echo)


@pytest.fixture
def relay(settings, world) -> Iterator[Relay]:
    base = free_port()
    settings.SSH_RELAY_PORTS = (base, base)  # one port: the second sandbox finds none
    settings.SSH_RELAY_BIND = "127.0.0.1"
    settings.SSH_RELAY_MAX_CONNECTIONS = 2
    made = Relay(world.admit, world.still_running)
    yield made
    made.stop()


def connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.settimeout(10)
    return conn


def closed_without_data(conn: socket.socket) -> bool:
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def test_bytes_go_both_ways_unchanged(relay, world):
    world.admitted.add("sb_a")
    port = relay.open("sb_a")
    assert relay.open("sb_a") == port  # one port per sandbox
    with connect(port) as conn:
        payload = bytes(range(256)) * 512  # 128 KiB, more than one read
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += conn.recv(65536)
        assert received == payload
        conn.shutdown(socket.SHUT_WR)  # half-close reaches the far side, which closes
        assert conn.recv(1) == b""


def test_a_sandbox_not_admitted_gets_nothing(relay, world):
    port = relay.open("sb_a")
    with connect(port) as conn:
        assert closed_without_data(conn)


def test_connections_per_sandbox_are_capped(relay, world):
    world.admitted.add("sb_a")
    port = relay.open("sb_a")
    first, second = connect(port), connect(port)
    try:
        for conn in (first, second):  # both forwarded
            conn.sendall(b"x")
            assert conn.recv(1) == b"x"
        with connect(port) as third:
            assert closed_without_data(third)
    finally:
        first.close()
        second.close()


def test_no_free_port_is_relay_busy(relay, world):
    relay.open("sb_a")
    with pytest.raises(RelayBusy):
        relay.open("sb_b")


def test_the_sweep_cuts_a_gone_sandbox_and_frees_its_port(relay, world):
    world.admitted.add("sb_a")
    world.running.add("sb_a")
    port = relay.open("sb_a")
    with connect(port) as conn:
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        world.admitted.clear()
        world.running.clear()  # destroyed
        relay._call(relay._sweep("sb_a"))
        assert closed_without_data(conn)
    refused = False
    deadline = time.monotonic() + 10
    while not refused and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            time.sleep(0.1)
        except ConnectionRefusedError:
            refused = True
    assert refused
    assert relay.open("sb_b") == port  # the port is free for another sandbox


def test_expired_access_lets_sessions_finish_until_the_sandbox_goes(relay, world):
    world.admitted.add("sb_a")
    world.running.add("sb_a")  # still running: only its certificates expired
    port = relay.open("sb_a")
    with connect(port) as conn:
        conn.sendall(b"x")
        assert conn.recv(1) == b"x"
        world.admitted.clear()
        relay._call(relay._sweep("sb_a"))
        conn.sendall(b"y")  # the open session goes on
        assert conn.recv(1) == b"y"
        with pytest.raises(ConnectionRefusedError):  # but no new one comes in
            socket.create_connection(("127.0.0.1", port), timeout=2)
        # When the sandbox goes later, the session that outlived its port is cut too.
        world.running.clear()
        relay._call(relay._sweep("sb_a"))
        assert closed_without_data(conn)


def test_a_silent_client_is_let_go_once_the_far_side_ends(relay, world, monkeypatch):
    """sshd ended the session (a client that vanished never sends its end): the relay's
    connection ends after a short linger instead of waiting on the client forever."""
    monkeypatch.setattr("console.ssh.relay.LINGER_SECONDS", 0.5)
    closing = socket.create_server(("127.0.0.1", 0))
    world.echo_port = closing.getsockname()[1]
    world.admitted.add("sb_a")
    port = relay.open("sb_a")
    try:
        with connect(port) as conn:
            upstream, _ = closing.accept()
            upstream.close()  # the far side ends; the client stays, silent
            assert conn.recv(1) == b""  # it is told (half-close)
            deadline = time.monotonic() + 30
            while relay._connections.get("sb_a") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not relay._connections.get("sb_a")  # and the slot is free again
    finally:
        closing.close()
