"""The upstream WebSocket leg's protocol core, ours against the `websockets` library's
sans-I/O ClientProtocol, on the gateway's per-message work: one server frame arrives,
the message is taken, one masked client frame goes out (an echo, as the benchmark's
WebSocket cell does). No sockets: bytes in, bytes out, CPU time per message.

    .venv/bin/python bench/ws_protocol_bench.py [--messages 200000] [--size 13]

Both sides run in this process on the same bytes; the figure that matters is the
difference per message against the gateway's whole per-message CPU cost (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import statistics
import struct
import sys
import time
from pathlib import Path

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.wsclient import UpstreamSocket  # noqa: E402

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class _Transport:
    """Just enough of an asyncio transport for UpstreamSocket."""

    def __init__(self) -> None:
        self.sent = 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def server_frame(payload: bytes) -> bytes:
    """A server's (unmasked) text frame."""
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", 0x81, length) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


async def ours(frame: bytes, count: int) -> float:
    sock = UpstreamSocket(max_size=1 << 24)
    sock.connection_made(_Transport())
    started = time.perf_counter()
    for _ in range(count):
        sock.data_received(frame)
        message = sock.take()
        sock.write(message)
    return time.perf_counter() - started


def library(frame: bytes, count: int) -> float:
    protocol = ClientProtocol(parse_uri("ws://upstream/"), max_size=1 << 24)
    request = protocol.connect()
    protocol.send_request(request)
    protocol.data_to_send()
    accept = base64.b64encode(
        hashlib.sha1(request.headers["Sec-WebSocket-Key"].encode() + GUID).digest()
    )
    protocol.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    protocol.events_received()
    assert protocol.state is State.OPEN  # past the handshake, as the splice is
    started = time.perf_counter()
    for _ in range(count):
        protocol.receive_data(frame)
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                protocol.send_text(event.data)
        protocol.data_to_send()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=13)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frame = server_frame(b"m" * args.size)
    mine, theirs = [], []
    for _ in range(args.rounds):  # interleaved, so outside load hits both alike
        mine.append(asyncio.run(ours(frame, args.messages)) / args.messages * 1e6)
        theirs.append(library(frame, args.messages) / args.messages * 1e6)
    a, b = statistics.median(mine), statistics.median(theirs)
    print(f"{args.size} B messages, median of {args.rounds} rounds of {args.messages}:")
    print(f"  ours (gateway/wsclient.py):          {a:.2f} µs per message")
    print(f"  websockets sans-I/O ClientProtocol:  {b:.2f} µs per message")
    print(f"  difference: {b - a:+.2f} µs per message")


if __name__ == "__main__":
    main()
