"""
Server-to-client WebSocket frames, built once per message and shared by every recipient.

A server frame is unmasked, so its bytes are the same for every connection that
negotiated the same thing: no extension, or permessage-deflate (RFC 7692) with
C{server_no_context_takeover} and a given C{server_max_window_bits}. With no context
takeover each message is compressed on its own, so one compressed frame serves every
such watcher and the server keeps no compressor per connection.
"""

from __future__ import annotations

import zlib

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80
_RSV1 = 0x40
_SYNC_TAIL = b"\x00\x00\xff\xff"
DEFLATE_LEVEL = 6
DEFLATE_MEM_LEVEL = 8


def frame(payload: bytes, binary: bool = False, compressed: bool = False) -> bytes:
    """One final, unmasked frame carrying C{payload}; RSV1 marks it compressed."""
    head = _FIN | (OPCODE_BINARY if binary else OPCODE_TEXT) | (_RSV1 if compressed else 0)
    n = len(payload)
    if n < 126:
        return bytes((head, n)) + payload
    if n < 65536:
        return bytes((head, 126)) + n.to_bytes(2, "big") + payload
    return bytes((head, 127)) + n.to_bytes(8, "big") + payload


def deflate(payload: bytes, windowBits: int) -> bytes:
    """C{payload} as one permessage-deflate message without context takeover: raw
    deflate with a fresh compressor, sync-flushed, the trailing empty block removed."""
    compressor = zlib.compressobj(DEFLATE_LEVEL, zlib.DEFLATED, -windowBits, DEFLATE_MEM_LEVEL)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    if data.endswith(_SYNC_TAIL):
        data = data[:-4]
    return data


def deflatedFrame(payload: bytes, binary: bool, windowBits: int) -> bytes:
    """The compressed frame of C{payload} for connections using C{windowBits}."""
    return frame(deflate(payload, windowBits), binary, compressed=True)
