"""Record files sealed at rest with the `cryptography` package's AEAD and key wrap.

Each file gets a data key of its own (AES-256), made when the file is stored. Its segments
(``bridge.domain.file_segments``) are sealed with AES-256-GCM under that key; the data key
is kept only wrapped (AES key wrap, RFC 3394) by a key-encryption key from
``BRIDGE_FILE_KEYS``, whose id is stored beside it. Rotating the key-encryption key
re-wraps the data keys and leaves the files as they are; erasing a file's wrapped data key
makes its ciphertext unreadable for good (crypto-shredding).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from bridge.domain.file_segments import (
    NONCE_PREFIX_BYTES,
    SEGMENT_BYTES,
    TAG_BYTES,
    SegmentSpan,
    associated_data,
    nonce,
    plain_length,
    segment_count,
    span,
)
from bridge.errors import FileKeysInvalid, RecordFileDamaged
from bridge.services.ports.files import SealedFile

log = logging.getLogger(__name__)

KEY_BYTES = 32  # AES-256, for both the key-encryption keys and the data keys
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # fullmatch: no "$" a newline slips past
_SPLIT = re.compile(r"[,\s]+")
MISSING = (
    "record files are stored encrypted and the bridge has no key: set BRIDGE_FILE_KEYS"
    " (id:base64-key[,id:base64-key...]) or BRIDGE_FILE_KEYS_FILE (a file holding them);"
    " make a key with `xueji files new-key`"
)


class FileKeys:
    """The deployment's key-encryption keys by id; the active one wraps new data keys."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise FileKeysInvalid(f"the active file key {active!r} is not among the keys given")
        self._keys = dict(keys)
        self.active_id = active

    def __repr__(self) -> str:  # never the keys themselves
        return f"FileKeys(ids={sorted(self._keys)!r}, active={self.active_id!r})"

    @property
    def ids(self) -> list[str]:
        """Every configured key id."""
        return sorted(self._keys)

    def has(self, key_id: str) -> bool:
        """True if the key *key_id* is configured."""
        return key_id in self._keys

    @classmethod
    def parse(cls, text: str, *, setting: str, active: str | None = None) -> FileKeys:
        """Keys from ``id:base64key`` entries (commas, spaces or lines; ``#`` comments).

        Errors name *setting* and the entry, never any key material.
        """
        lines = [line.split("#", 1)[0] for line in text.splitlines()]
        entries = [e for e in _SPLIT.split(" ".join(lines)) if e]
        if not entries:
            raise FileKeysInvalid(MISSING)
        keys: dict[str, bytes] = {}
        for n, entry in enumerate(entries, 1):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not KEY_ID.fullmatch(key_id):
                raise FileKeysInvalid(
                    f"{setting}: entry {n} is not `id:base64-key` (an id of letters, digits,"
                    " '.', '_' or '-', then a colon)"
                )
            if key_id in keys:
                raise FileKeysInvalid(f"{setting}: key id {key_id!r} is given twice")
            keys[key_id] = _decode_key(encoded, setting, key_id)
        return cls(keys, active or next(iter(keys)))

    @classmethod
    def from_settings(cls, keys: str | None, keys_file: str | None, active: str | None) -> FileKeys:
        """The keys of BRIDGE_FILE_KEYS or BRIDGE_FILE_KEYS_FILE (exactly one of them)."""
        if keys and keys_file:
            raise FileKeysInvalid("set BRIDGE_FILE_KEYS or BRIDGE_FILE_KEYS_FILE, not both")
        if keys_file:
            path = Path(keys_file)
            try:
                text = path.read_text(encoding="utf-8")
                mode = path.stat().st_mode
            except OSError as exc:
                raise FileKeysInvalid(
                    f"BRIDGE_FILE_KEYS_FILE: cannot read {keys_file} ({exc.strerror})"
                ) from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                log.warning("BRIDGE_FILE_KEYS_FILE %s is readable by others: chmod 600", keys_file)
            return cls.parse(text, setting="BRIDGE_FILE_KEYS_FILE", active=active or None)
        if not keys:
            raise FileKeysInvalid(MISSING)
        return cls.parse(keys, setting="BRIDGE_FILE_KEYS", active=active or None)

    def wrap(self, data_key: bytes, key_id: str | None = None) -> tuple[str, bytes]:
        """(*key_id* or the active id, the data key wrapped by that key)."""
        kid = key_id or self.active_id
        return kid, aes_key_wrap(self._kek(kid), data_key)

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key; RecordFileDamaged if the wrapped key does not open under *key_id*."""
        try:
            return aes_key_unwrap(self._kek(key_id), wrapped)
        except (InvalidUnwrap, ValueError):
            raise RecordFileDamaged("the file's data key does not unwrap") from None

    def check_value(self, key_id: str) -> bytes:
        """A random value wrapped by *key_id*: stored once, it tells this key from another."""
        return aes_key_wrap(self._kek(key_id), os.urandom(KEY_BYTES))

    def opens(self, key_id: str, check_value: bytes) -> bool:
        """True if *check_value* was wrapped by the key configured as *key_id*."""
        try:
            aes_key_unwrap(self._kek(key_id), check_value)
        except (InvalidUnwrap, ValueError):
            return False
        return True

    def _kek(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise FileKeysInvalid(
                f"no key {key_id!r} in BRIDGE_FILE_KEYS, yet stored record files use it"
            ) from None


def required(keys: FileKeys | None) -> FileKeys:
    """*keys*, or FileKeysInvalid naming the settings when none were given (a command that
    opens no record file runs without them; using them then is refused)."""
    if keys is None:
        raise FileKeysInvalid(MISSING)
    return keys


def _decode_key(encoded: str, setting: str, key_id: str) -> bytes:
    padded = encoded + "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise FileKeysInvalid(
            f"{setting}: key {key_id!r} is not {KEY_BYTES} bytes in base64 (an AES-256 key)"
        )
    return key


def new_key_line(key_id: str) -> str:
    """A fresh ``id:base64key`` entry for BRIDGE_FILE_KEYS."""
    if not KEY_ID.fullmatch(key_id):
        raise ValueError("a key id is letters, digits, '.', '_' or '-' (at most 64)")
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


def seal(keys: FileKeys, sha256_hex: str, plaintext: bytes) -> SealedFile:
    """*plaintext* sealed under a new data key, wrapped by the active key."""
    data_key = AESGCM.generate_key(bit_length=256)
    prefix = os.urandom(NONCE_PREFIX_BYTES)
    aead = AESGCM(data_key)
    size = len(plaintext)
    count = segment_count(size)
    view = memoryview(plaintext)
    parts = []
    for i in range(count):
        last = i == count - 1
        segment = view[i * SEGMENT_BYTES : i * SEGMENT_BYTES + SEGMENT_BYTES]
        parts.append(
            aead.encrypt(
                nonce(prefix, i, last), segment, associated_data(sha256_hex, size, i, last)
            )
        )
    key_id, wrapped = keys.wrap(data_key)
    return SealedFile(key_id, wrapped, prefix, b"".join(parts))


def open_span(
    keys: FileKeys, sha256_hex: str, size: int, sealed: SealedFile, part: SegmentSpan, data: bytes
) -> bytes:
    """The plaintext of the whole segments *part* names, from their sealed bytes *data*.

    RecordFileDamaged if anything is off: a segment changed, missing, moved or cut short,
    a key that does not unwrap, or bytes of another file.
    """
    if len(data) != part.sealed_bytes:
        raise RecordFileDamaged("the stored file is shorter or longer than its size says")
    aead = AESGCM(keys.unwrap(sealed.key_id, sealed.wrapped_key))
    final = segment_count(size) - 1
    view = memoryview(data)
    out = []
    pos = 0
    try:
        for i in range(part.first_index, part.first_index + part.count):
            length = plain_length(size, i) + TAG_BYTES
            last = i == final
            out.append(
                aead.decrypt(
                    nonce(sealed.nonce_prefix, i, last),
                    view[pos : pos + length],
                    associated_data(sha256_hex, size, i, last),
                )
            )
            pos += length
    except (InvalidTag, ValueError):
        raise RecordFileDamaged("a segment of the stored file failed authentication") from None
    return b"".join(out)


def open_file(keys: FileKeys, sha256_hex: str, size: int, sealed: SealedFile) -> bytes:
    """The whole plaintext of a sealed file (its ciphertext read in full)."""
    if sealed.ciphertext is None:
        raise ValueError("the sealed bytes were not read")
    return open_span(keys, sha256_hex, size, sealed, span(size, 0, size), sealed.ciphertext)


def rewrap(keys: FileKeys, sealed: SealedFile) -> SealedFile:
    """The same file with its data key wrapped by the active key (no segment re-sealed)."""
    data_key = keys.unwrap(sealed.key_id, sealed.wrapped_key)
    key_id, wrapped = keys.wrap(data_key)
    return SealedFile(key_id, wrapped, sealed.nonce_prefix, sealed.ciphertext)
