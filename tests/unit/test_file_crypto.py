"""Record files sealed at rest: segments, ranges, tampering, keys and rotation."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.adapters.file_crypto import (
    FileKeys,
    new_key_line,
    open_file,
    open_span,
    rewrap,
    seal,
)
from bridge.domain.file_segments import (
    SEGMENT_BYTES,
    TAG_BYTES,
    sealed_length,
    segment_count,
    span,
)
from bridge.errors import FileKeysInvalid, RecordFileDamaged
from bridge.services.ports.files import SealedFile

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.b64encode(b"B" * 32).decode()
KEYS = FileKeys.parse(f"k1:{KEY_A}", setting="test")
SIZES = [0, 1, SEGMENT_BYTES - 1, SEGMENT_BYTES, SEGMENT_BYTES + 1, 3 * SEGMENT_BYTES + 5]


def sealed(content: bytes, keys: FileKeys = KEYS) -> tuple[str, SealedFile]:
    sha = hashlib.sha256(content).hexdigest()
    return sha, seal(keys, sha, content)


def read_range(sha: str, size: int, s: SealedFile, first: int, length: int) -> bytes:
    """What a download does: read the whole segments of the range, open them, slice."""
    assert s.ciphertext is not None
    part = span(size, first, length)
    data = s.ciphertext[part.sealed_start : part.sealed_start + part.sealed_bytes]
    plain = open_span(KEYS, sha, size, s, part, data)
    return plain[part.skip : part.skip + length]


@pytest.mark.parametrize("size", SIZES)
def test_a_file_opens_to_its_bytes_and_its_sealed_form_hides_them(size: int) -> None:
    content = os.urandom(size)
    sha, s = sealed(content)
    assert s.ciphertext is not None
    assert len(s.ciphertext) == sealed_length(size) == size + segment_count(size) * TAG_BYTES
    assert open_file(KEYS, sha, size, s) == content
    if size >= 32:
        assert content[:32] not in s.ciphertext
    assert s.key_id == "k1" and len(s.nonce_prefix) == 7


def test_sealing_the_same_bytes_twice_gives_unrelated_ciphertexts() -> None:
    content = b"same record file" * 100
    _, one = sealed(content)
    _, two = sealed(content)
    assert one.ciphertext != two.ciphertext and one.wrapped_key != two.wrapped_key


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(0, 4 * SEGMENT_BYTES + 3),
    first_frac=st.floats(0, 1),
    length_frac=st.floats(0, 1),
)
def test_any_range_opens_only_its_segments_and_gives_the_same_bytes(
    size: int, first_frac: float, length_frac: float
) -> None:
    content = bytes(i % 251 for i in range(size))
    sha, s = sealed(content)
    first = min(size, int(first_frac * size))
    length = int(length_frac * (size - first))
    part = span(size, first, length)
    assert part.count <= length // SEGMENT_BYTES + 2
    assert read_range(sha, size, s, first, length) == content[first : first + length]


def test_a_changed_byte_anywhere_fails_authentication() -> None:
    content = os.urandom(2 * SEGMENT_BYTES + 10)
    sha, s = sealed(content)
    assert s.ciphertext is not None
    for where in (0, SEGMENT_BYTES + 3, len(s.ciphertext) - 1):
        broken = bytearray(s.ciphertext)
        broken[where] ^= 1
        changed = SealedFile(s.key_id, s.wrapped_key, s.nonce_prefix, bytes(broken))
        with pytest.raises(RecordFileDamaged):
            open_file(KEYS, sha, len(content), changed)


def test_a_file_cut_short_fails_even_when_its_size_is_cut_to_match() -> None:
    content = os.urandom(2 * SEGMENT_BYTES + 10)
    sha, s = sealed(content)
    assert s.ciphertext is not None
    first_two = s.ciphertext[: 2 * (SEGMENT_BYTES + TAG_BYTES)]
    cut = SealedFile(s.key_id, s.wrapped_key, s.nonce_prefix, first_two)
    with pytest.raises(RecordFileDamaged):  # the size says three segments
        open_file(KEYS, sha, len(content), cut)
    with pytest.raises(RecordFileDamaged):  # the size and the last-segment flag disagree
        open_file(KEYS, sha, 2 * SEGMENT_BYTES, cut)


def test_segments_in_another_order_fail_authentication() -> None:
    content = os.urandom(3 * SEGMENT_BYTES)
    sha, s = sealed(content)
    assert s.ciphertext is not None
    n = SEGMENT_BYTES + TAG_BYTES
    segs = [s.ciphertext[i * n : (i + 1) * n] for i in range(3)]
    swapped = segs[1] + segs[0] + segs[2]
    with pytest.raises(RecordFileDamaged):
        open_file(KEYS, sha, len(content),
                  SealedFile(s.key_id, s.wrapped_key, s.nonce_prefix, swapped))  # fmt: skip


def test_a_sealed_file_cannot_pass_for_another_file() -> None:
    a, b = os.urandom(1000), os.urandom(1000)
    sha_a, sealed_a = sealed(a)
    sha_b, _ = sealed(b)
    with pytest.raises(RecordFileDamaged):  # row b holding a's sealed form whole
        open_file(KEYS, sha_b, 1000, sealed_a)
    assert open_file(KEYS, sha_a, 1000, sealed_a) == a


def test_another_key_under_the_same_id_does_not_open_a_file() -> None:
    sha, s = sealed(b"x" * 500)
    other = FileKeys.parse(f"k1:{KEY_B}", setting="test")
    with pytest.raises(RecordFileDamaged):
        open_file(other, sha, 500, s)
    assert not other.opens("k1", KEYS.check_value("k1"))
    assert KEYS.opens("k1", KEYS.check_value("k1"))


def test_rotation_rewraps_the_data_key_and_leaves_the_segments_alone() -> None:
    content = os.urandom(SEGMENT_BYTES + 7)
    sha, old = sealed(content)
    both = FileKeys.parse(f"k2:{KEY_B},k1:{KEY_A}", setting="test")
    new = rewrap(both, old)
    assert new.key_id == "k2" and new.ciphertext == old.ciphertext
    assert new.nonce_prefix == old.nonce_prefix and new.wrapped_key != old.wrapped_key
    only_new = FileKeys.parse(f"k2:{KEY_B}", setting="test")
    assert open_file(only_new, sha, len(content), new) == content
    with pytest.raises(FileKeysInvalid, match="k1"):  # the old key is needed for old files
        open_file(only_new, sha, len(content), old)


def test_the_first_key_wraps_new_files_unless_another_is_named_active() -> None:
    assert FileKeys.parse(f"k2:{KEY_B},k1:{KEY_A}", setting="t").active_id == "k2"
    named = FileKeys.parse(f"k2:{KEY_B}\nk1:{KEY_A}  # old", setting="t", active="k1")
    assert named.active_id == "k1" and named.ids == ["k1", "k2"]
    assert sealed(b"abc", named)[1].key_id == "k1"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "BRIDGE_FILE_KEYS"),
        ("   # only a comment", "BRIDGE_FILE_KEYS"),
        (KEY_A, "entry 1 is not `id:base64-key`"),
        ("bad id!:" + KEY_A, "entry 1"),
        ("k1:" + base64.b64encode(b"short").decode(), "not 32 bytes"),
        ("k1:not base64 at all", "not 32 bytes"),
        (f"k1:{KEY_A},k1:{KEY_B}", "given twice"),
    ],
)
def test_malformed_keys_are_refused_naming_the_setting_and_never_the_key(
    text: str, says: str
) -> None:
    with pytest.raises(FileKeysInvalid) as raised:
        FileKeys.parse(text, setting="BRIDGE_FILE_KEYS")
    assert says in str(raised.value)
    assert KEY_A not in str(raised.value) and KEY_B not in str(raised.value)


def test_settings_take_one_source_of_keys_and_say_which_is_missing(tmp_path: object) -> None:
    with pytest.raises(FileKeysInvalid, match="BRIDGE_FILE_KEYS_FILE"):
        FileKeys.from_settings(None, None, None)
    with pytest.raises(FileKeysInvalid, match="not both"):
        FileKeys.from_settings(f"k1:{KEY_A}", "/some/file", None)
    with pytest.raises(FileKeysInvalid, match="cannot read"):
        FileKeys.from_settings(None, "/nonexistent/xueji-keys", None)
    with pytest.raises(FileKeysInvalid, match="active file key 'k9'"):
        FileKeys.from_settings(f"k1:{KEY_A}", None, "k9")


def test_a_key_file_holds_keys_one_a_line(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "keys")
    line = new_key_line("k2027")
    with open(path, "w") as f:
        f.write(f"# record file keys\n{line}\nk1:{KEY_A}\n")
    os.chmod(path, 0o600)
    keys = FileKeys.from_settings(None, path, None)
    assert keys.active_id == "k2027" and keys.ids == ["k1", "k2027"]
    assert "k2027" in repr(keys) and line.split(":")[1] not in repr(keys)
