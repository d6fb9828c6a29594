"""console/output_stream.py: order, errors, back-pressure and closing, with real threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from console.output_stream import OutputStream


async def test_items_arrive_in_order_then_the_stream_ends():
    stream = OutputStream(lambda stop: iter(range(100)), name="t-order")
    async with stream:
        assert [item async for item in stream] == list(range(100))
    assert [item async for item in stream] == []  # ended streams stay ended


async def test_a_producer_error_is_raised_at_the_reader():
    def produce(stop: threading.Event):
        yield "first"
        raise OSError("log file vanished")

    stream = OutputStream(produce, name="t-error")
    got = []
    with pytest.raises(OSError, match="vanished"):
        async for item in stream:
            got.append(item)
    assert got == ["first"]


async def test_a_slow_reader_holds_the_producer_back():
    produced = 0

    def produce(stop: threading.Event):
        nonlocal produced
        while not stop.is_set() and produced < 10_000:
            produced += 1
            yield b"x" * 65536

    stream = OutputStream(produce, name="t-pressure", max_pending=4)
    async with stream:
        first = await stream.__anext__()
        await asyncio.sleep(0.5)  # the reader stalls; the producer must wait, not pile up
        assert len(first) == 65536
        assert produced <= 4 + 2, produced  # the queue, one in hand, one being put
        for _ in range(10):
            await stream.__anext__()
        await asyncio.sleep(0.2)
        assert produced <= 4 + 2 + 10
    await asyncio.sleep(0.5)
    stopped_at = produced
    await asyncio.sleep(0.3)
    assert produced == stopped_at  # closing stopped the thread


async def test_closing_wakes_a_reader_and_a_waiting_producer():
    left = threading.Event()

    def produce(stop: threading.Event):
        yield "hello"
        while not stop.is_set():  # like follow_output polling a quiet process
            time.sleep(0.01)
        left.set()

    stream = OutputStream(produce, name="t-close")
    assert await stream.__anext__() == "hello"
    reader = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.1)
    assert not reader.done()
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reader, timeout=2)
    assert await asyncio.to_thread(left.wait, 2)
