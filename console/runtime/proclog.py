"""Reading what a supervisor (supervise.py) keeps about a process, from any process."""

from __future__ import annotations

import codecs
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from console.runtime.base import OutputEvent, ProcessInfo, ProcessLogs, ProcessMissing
from console.runtime.supervise import _start_ticks

KINDS = {b"o": "stdout", b"e": "stderr", b"t": "truncated"}
STREAMS = ("stdout", "stderr")
# What follow() reads of the output file at a time: a reader far behind a fast process
# holds this much, not everything the process wrote meanwhile.
READ_CHUNK = 1024 * 1024
HEADER = 5


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def exit_code(procdir: Path) -> int | None:
    data = read_json(procdir / "exit.json")
    return None if data is None else int(data["exit_code"])


def was_truncated(procdir: Path) -> bool:
    """The supervisor dropped output past its cap (known once the process has exited)."""
    data = read_json(procdir / "exit.json") or {}
    return bool(data.get("output_dropped_bytes"))


def oom_killed(procdir: Path) -> bool:
    """The kernel killed the process for going over the sandbox's memory limit."""
    return bool((read_json(procdir / "exit.json") or {}).get("oom"))


def is_alive(meta: dict[str, Any]) -> bool:
    """The process named in meta.json still runs (same pid and same start time)."""
    ticks = _start_ticks(int(meta["pid"]))
    return ticks is not None and ticks == meta.get("start_ticks")


def info(procdir: Path) -> ProcessInfo | None:
    meta = read_json(procdir / "meta.json")
    if meta is None:
        return None
    code = exit_code(procdir)
    running = code is None and is_alive(meta)
    return ProcessInfo(
        pid=int(meta["pid"]),
        command=meta["command"],
        running=running,
        exit_code=code,
        oom_killed=code is not None and oom_killed(procdir),
    )


def parse_frames(buffer: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """Complete frames in buffer and how many bytes they take (a partial tail is left)."""
    frames = []
    pos = 0
    while len(buffer) - pos >= HEADER:
        (size,) = struct.unpack(">I", buffer[pos + 1 : pos + HEADER])
        if len(buffer) - pos - HEADER < size:
            break
        frames.append(
            (KINDS.get(buffer[pos : pos + 1], "stdout"), buffer[pos + HEADER : pos + HEADER + size])
        )
        pos += HEADER + size
    return frames, pos


def _read_head(path: Path, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes from the start of path, and whether there was more."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        return b"", False
    return data[:limit], len(data) > limit


def _text(data: bytes) -> str:
    # Not final: a character cut in half at the limit is left out, not replaced.
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data)


def logs(procdir: Path, limit: int) -> ProcessLogs:
    """The process's output so far, at most `limit` bytes of each stream in memory."""
    if not (procdir / "meta.json").exists():
        raise ProcessMissing("no such process")
    code = exit_code(procdir)
    stdout, cut_out = _read_head(procdir / "stdout", limit)
    stderr, cut_err = _read_head(procdir / "stderr", limit)
    output, cut_all = _read_head(procdir / "output", limit)
    frames, _ = parse_frames(output)
    return ProcessLogs(
        stdout=_text(stdout),
        stderr=_text(stderr),
        output=_text(b"".join(data for kind, data in frames if kind != "truncated")),
        exit_code=code,
        truncated=cut_out or cut_err or cut_all or was_truncated(procdir),
        oom_killed=code is not None and oom_killed(procdir),
    )


def wait(procdir: Path, timeout: float | None) -> int | None:
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while True:
        code = exit_code(procdir)
        if code is not None:
            return code
        if not procdir.exists():
            raise ProcessMissing("the process is gone (its sandbox was destroyed)")
        meta = read_json(procdir / "meta.json")
        if meta and not is_alive(meta) and not _supervisor_alive(meta):
            return exit_code(procdir)  # supervisor and process both gone: no code to wait for
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.05)


def _supervisor_alive(meta: dict[str, Any]) -> bool:
    try:
        os.kill(int(meta.get("supervisor_pid", 0)) or -1, 0)
    except (ProcessLookupError, PermissionError, ValueError):
        return False
    return True


def _tail_start(fh: BinaryIO, tail_bytes: int) -> int:
    """The offset of the first whole frame within the last `tail_bytes` of output."""
    starts = []
    pos = 0
    while header := fh.read(HEADER):
        if len(header) < HEADER:
            break
        starts.append(pos)
        pos += HEADER + struct.unpack(">I", header[1:])[0]
        fh.seek(pos)
    end = pos
    fh.seek(0)
    fitting = [start for start in starts if end - start <= tail_bytes]
    return fitting[0] if fitting else (starts[-1] if starts else 0)


def follow(
    procdir: Path,
    stop_after: float | None,
    stop: threading.Event | None = None,
    tail_bytes: int | None = None,
) -> Iterator[OutputEvent]:
    """Yield output frames as the supervisor appends them; end with the exit event.

    Setting `stop` ends it early even while nothing arrives (a reader that left);
    `tail_bytes` starts from about the last that many bytes of earlier output."""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    decoders = {kind: codecs.getincrementaldecoder("utf-8")("replace") for kind in STREAMS}
    offset = 0
    delay = 0.002
    try:
        fh = open(procdir / "output", "rb")
    except FileNotFoundError as exc:
        raise ProcessMissing("no such process") from exc
    with fh:
        if tail_bytes is not None:
            fh.seek(_tail_start(fh, tail_bytes))
        pending = b""
        while True:
            code = exit_code(procdir)  # read before the data: all output precedes exit.json
            chunk = fh.read(READ_CHUNK)
            if chunk:
                pending += chunk
                offset += len(chunk)
                frames, used = parse_frames(pending)
                pending = pending[used:]
                for kind, data in frames:
                    if kind == "truncated":
                        yield OutputEvent(kind="truncated")
                        continue
                    text = decoders[kind].decode(data)
                    if text:
                        yield OutputEvent(kind=kind, data=text)
                delay = 0.002
            if code is not None and len(chunk) < READ_CHUNK:  # exited, and all of it read
                for kind, decoder in decoders.items():
                    tail = decoder.decode(b"", final=True)
                    if tail:
                        yield OutputEvent(kind=kind, data=tail)
                yield OutputEvent(kind="exit", exit_code=code, truncated=was_truncated(procdir))
                return
            if not chunk:
                if not procdir.exists():
                    raise ProcessMissing("the process is gone (its sandbox was destroyed)")
                meta = read_json(procdir / "meta.json")
                if meta and not is_alive(meta) and not _supervisor_alive(meta):
                    yield OutputEvent(kind="exit", exit_code=exit_code(procdir) or -1)
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                if stop is not None and stop.is_set():
                    return
                time.sleep(delay)
                delay = min(delay * 1.5, 0.05)
