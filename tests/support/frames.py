"""Hand-built WebSocket client traffic, for what well-behaved libraries refuse to send."""

from __future__ import annotations

import base64
import os
import struct


def frame(
    opcode: int, payload: bytes, *, declared_len: int | None = None, zero_mask: bool = False
) -> bytes:
    """A masked client frame; ``declared_len`` lets the header lie about the payload.

    A zero mask is valid and keeps bulk payloads cheap to build.
    """
    length = len(payload) if declared_len is None else declared_len
    head = bytes([0x80 | opcode])
    if length < 126:
        head += bytes([0x80 | length])
    elif length < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    if zero_mask:
        return head + b"\0\0\0\0" + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def upgrade_request(port: int) -> bytes:
    """The HTTP request that upgrades a raw connection to 127.0.0.1:``port``/probe/ws."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /probe/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
