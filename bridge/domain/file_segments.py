"""How a record file is laid out at rest: fixed-size segments, each sealed on its own.

A file is cut into segments of SEGMENT_BYTES (the last one shorter, an empty file one empty
segment). Each is sealed with an AEAD under the file's own data key; its ciphertext is as
long as its plaintext plus a TAG_BYTES tag, and the segments follow each other in one
column. A range of the plaintext therefore maps to whole segments at a known offset, and a
download decrypts only the segments it sends (the STREAM construction of Hoang,
Reyhanitabar, Rogaway and Vizár: a nonce of prefix, counter and last-segment flag).

What each segment is bound to, in its nonce and associated data: its index and whether it
is the last (so segments cannot be reordered, dropped or the file cut short), and the
file's sha256 and size (so no segment, nor a whole sealed file, can pass for another
file's). Pure arithmetic and byte strings; the cipher lives in the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

# 64 KiB: a 20 KB record file is one segment, and a range request decrypts at most one
# segment it does not send on either side.
SEGMENT_BYTES = 64 * 1024
TAG_BYTES = 16  # AES-GCM's full tag
NONCE_PREFIX_BYTES = 7  # + 4 bytes of index + 1 byte of flag = AES-GCM's 12-byte nonce
_CONTEXT = b"xueji-record-file-v1"
MAX_SEGMENTS = 2**32  # the index is four bytes


def segment_count(size: int) -> int:
    """Segments of a file of *size* bytes (an empty file has one, empty)."""
    if size < 0:
        raise ValueError("a size is never negative")
    count = max(1, -(-size // SEGMENT_BYTES))
    if count > MAX_SEGMENTS:
        raise ValueError("file too large for the segment index")
    return count


def plain_length(size: int, index: int) -> int:
    """Plaintext bytes in segment *index* of a file of *size* bytes."""
    return max(0, min(SEGMENT_BYTES, size - index * SEGMENT_BYTES))


def sealed_length(size: int) -> int:
    """Bytes of the sealed form of a file of *size* bytes."""
    return size + segment_count(size) * TAG_BYTES


def sealed_offset(index: int) -> int:
    """Where segment *index* starts in the sealed form (every earlier segment is full)."""
    return index * (SEGMENT_BYTES + TAG_BYTES)


def nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """The segment's nonce: the file's random prefix, its index and the last-segment flag."""
    if len(prefix) != NONCE_PREFIX_BYTES:
        raise ValueError("wrong nonce prefix length")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def associated_data(sha256_hex: str, size: int, index: int, last: bool) -> bytes:
    """What the segment's tag also covers: the file it belongs to and its place in it."""
    return (
        _CONTEXT
        + bytes.fromhex(sha256_hex)
        + size.to_bytes(8, "big")
        + index.to_bytes(4, "big")
        + (b"\x01" if last else b"\x00")
    )


@dataclass(frozen=True, slots=True)
class SegmentSpan:
    """The segments that hold plaintext bytes [first, first + length) of a file."""

    first_index: int
    count: int
    sealed_start: int  # offset of the first segment in the sealed form
    sealed_bytes: int  # bytes of sealed form to read: the whole segments
    skip: int  # plaintext bytes of the first segment before the range


def span(size: int, first: int, length: int) -> SegmentSpan:
    """The whole segments to read and open for plaintext [first, first + length)."""
    if first < 0 or length < 0 or first + length > size:
        raise ValueError("range outside the file")
    final = segment_count(size) - 1
    first_index = min(first // SEGMENT_BYTES, final)
    last_index = min(max(first_index, (first + length - 1) // SEGMENT_BYTES), final)
    plain = min(size, (last_index + 1) * SEGMENT_BYTES) - first_index * SEGMENT_BYTES
    count = last_index - first_index + 1
    sealed_bytes = plain + count * TAG_BYTES
    return SegmentSpan(
        first_index=first_index,
        count=count,
        sealed_start=sealed_offset(first_index),
        sealed_bytes=sealed_bytes,
        skip=first - first_index * SEGMENT_BYTES,
    )
