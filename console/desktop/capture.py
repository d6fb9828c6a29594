"""Screenshots: ffmpeg grabs the X screen (x11grab) into a file in the sandbox, which we
read back through the file store and remove. Full, region and compressed (PNG, JPEG or
WebP; quality, scale, cursor) all take this one path."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from console.desktop import session as desktop
from console.errors import DomainError
from console.models import DesktopSession, Sandbox
from console.runtime import get_driver
from console.sandboxes import service as sandboxes

FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
ALIASES = {"jpg": "jpeg"}
MIN_SCALE, MAX_SCALE = 0.05, 2.0
MAX_IMAGE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Shot:
    x: int
    y: int
    width: int
    height: int
    format: str = "png"
    quality: int = 80
    scale: float = 1.0
    show_cursor: bool = False


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError("invalid_request", f"{name} must be an integer")
    return value


def region(session: DesktopSession, body: dict[str, Any]) -> tuple[int, int, int, int]:
    """x, y, width, height from the body, inside the screen (refused otherwise)."""
    x, y = _int(body, "x"), _int(body, "y")
    width, height = _int(body, "width"), _int(body, "height")
    if width <= 0 or height <= 0:
        raise DomainError("invalid_request", "width and height must be greater than 0")
    if x < 0 or y < 0 or x + width > session.width or y + height > session.height:
        raise DomainError(
            "invalid_request",
            f"region {width}x{height}+{x}+{y} is outside the {session.width}x{session.height} screen",
        )
    return x, y, width, height


def compressed(session: DesktopSession, body: dict[str, Any]) -> Shot:
    unknown = sorted(set(body) - {"format", "quality", "scale", "show_cursor", "region"})
    if unknown:
        raise DomainError("invalid_request", f"unknown screenshot option(s): {', '.join(unknown)}")
    fmt = str(body.get("format") or "png").lower()
    fmt = ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise DomainError(
            "invalid_request", f"format must be one of {', '.join(FORMATS)} (got {fmt!r})"
        )
    quality = body.get("quality", 80)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise DomainError("invalid_request", "quality must be an integer from 1 to 100")
    scale = body.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise DomainError("invalid_request", "scale must be a number")
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise DomainError("invalid_request", f"scale must be between {MIN_SCALE} and {MAX_SCALE}")
    show_cursor = body.get("show_cursor", False)
    if not isinstance(show_cursor, bool):
        raise DomainError("invalid_request", "show_cursor must be true or false")
    area = (0, 0, session.width, session.height)
    if body.get("region") is not None:
        if not isinstance(body["region"], dict):
            raise DomainError("invalid_request", "region must be an object {x, y, width, height}")
        area = region(session, body["region"])
    return Shot(*area, format=fmt, quality=quality, scale=float(scale), show_cursor=show_cursor)


def _codec(shot: Shot) -> list[str]:
    if shot.format == "jpeg":
        # ffmpeg's JPEG scale is 2 (best) .. 31 (worst).
        return ["-c:v", "mjpeg", "-q:v", str(round(31 - (shot.quality - 1) * 29 / 99))]
    if shot.format == "webp":
        return ["-c:v", "libwebp", "-quality", str(shot.quality)]
    return ["-c:v", "png"]


# The common case, a PNG at full size without the pointer, skips ffmpeg (whose libraries
# take ~200 ms to load): xwd reads the screen, this encodes the PNG (in the sandbox).
# It exits 3 on a screen format it does not know, and ffmpeg does the shot instead.
_PNG_FROM_XWD = r"""
import struct, sys, zlib
x, y, w, h = (int(v) for v in sys.argv[1:5])
data = sys.stdin.buffer.read()
head = struct.unpack(">25I", data[:100])
size, fmt, order, bpp, bpl = head[0], head[2], head[7], head[11], head[12]
if fmt != 2 or bpp != 32:
    sys.exit(3)
pixels = memoryview(data)[size + head[19] * 12:]
def offset(mask):
    byte = ((mask & -mask).bit_length() - 1) // 8
    return byte if order == 0 else 3 - byte
r, g, b = offset(head[14]), offset(head[15]), offset(head[16])
rows = []
for row in range(y, y + h):
    line = bytes(pixels[row * bpl + x * 4:row * bpl + (x + w) * 4])
    rgb = bytearray(w * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = line[r::4], line[g::4], line[b::4]
    rows.append(b"\0" + rgb)
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
with open(sys.argv[5], "wb") as out:
    out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
              + chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))
"""


def _xwd_png(sandbox: Sandbox, session: DesktopSession, shot: Shot, target: str) -> bool:
    script = 'xwd -root -silent | python3 -c "$0" "$@"'
    geometry = [str(shot.x), str(shot.y), str(shot.width), str(shot.height), target]
    result = desktop.run(
        session, sandbox, ["sh", "-c", script, _PNG_FROM_XWD, *geometry], check=False
    )
    return result.exit_code == 0


def take(sandbox: Sandbox, session: DesktopSession, shot: Shot) -> bytes:
    """The image bytes of `shot`."""
    target = f"{desktop.SCRATCH}/shot-{secrets.token_hex(6)}.{shot.format}"
    plain = shot.format == "png" and shot.scale == 1.0 and not shot.show_cursor
    if plain and _xwd_png(sandbox, session, shot, target):
        return _read(sandbox, target)
    argv = [
        "ffmpeg",
        "-nostdin",
        "-loglevel",
        "error",
        # One frame: no probing of the input first (it costs a few frames' time).
        "-probesize",
        "32",
        "-analyzeduration",
        "0",
        "-f",
        "x11grab",
        "-draw_mouse",
        "1" if shot.show_cursor else "0",
        "-video_size",
        f"{shot.width}x{shot.height}",
        "-i",
        f":{session.display}.0+{shot.x},{shot.y}",
        "-frames:v",
        "1",
    ]
    if shot.scale != 1.0:
        width = max(1, round(shot.width * shot.scale))
        height = max(1, round(shot.height * shot.scale))
        argv += ["-vf", f"scale={width}:{height}"]
    argv += [*_codec(shot), "-y", target]
    desktop.run(session, sandbox, argv)
    return _read(sandbox, target)


def _read(sandbox: Sandbox, target: str) -> bytes:
    files = get_driver().files(sandbox.runtime_id)
    try:
        with sandboxes.driver_call(lambda: files.open_read(target)) as handle:
            data = handle.read(MAX_IMAGE_BYTES + 1)
    finally:
        sandboxes.quietly(lambda: files.remove(target))
    if len(data) > MAX_IMAGE_BYTES:
        raise DomainError("payload_too_large", "the screenshot is larger than 64 MiB")
    return data
