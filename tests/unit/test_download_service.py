"""Record file downloads on in-memory ports: bytes in order, the receipt before the last."""

from __future__ import annotations

import hashlib
import io
import zipfile

import orjson
import pytest

from bridge.domain.access import PresentedToken, Principal, Role
from bridge.errors import RecordFileDamaged, RecordFileGone
from bridge.services.downloads import CHUNK_BYTES, ByteRange, Downloads
from tests.fakes.schools import MemorySchools, child_view

SCHOOL, OTHER = "2111010898", "2111010899"
G1, G2 = "G110108202001097076", "G110105201903070012"
OWN = Principal("tok_00000000000a", Role.SCHOOL, SCHOOL)
STRANGER = Principal("tok_00000000000b", Role.SCHOOL, OTHER)
SMALL = b'{"student_number": "G110108202001097076"}'
LARGE = bytes(range(256)) * (CHUNK_BYTES * 2 // 256 + 100)  # two chunks and a bit


def presented(principal: Principal) -> PresentedToken:
    return PresentedToken(principal.token_id, "hash-of-" + principal.token_id)


async def office(*contents: bytes) -> tuple[MemorySchools, Downloads]:
    """Children of SCHOOL with these files, and both tokens admitted."""
    schools = MemorySchools()
    for i, (number, content) in enumerate(zip((G1, G2), contents, strict=False), start=1):
        sha = hashlib.sha256(content).hexdigest()
        await schools.files.put(sha, "application/json", content)
        schools.children.append(
            child_view(i, number, SCHOOL, "110108", file_sha256=sha, file_size=len(content),
                       file_media_type="application/json")
        )  # fmt: skip
    for principal in (OWN, STRANGER):
        schools.admit_token(principal, presented(principal).secret_hash)
    return schools, Downloads(schools, schools, schools.files, schools, schools.clock)


async def test_a_small_file_comes_with_its_lookup_and_is_kept_before_it_goes() -> None:
    schools, downloads = await office(SMALL)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.token is not None and found.child is not None
    # Sealed with the lookup, opened after it: no second trip for the bytes.
    assert found.child.sealed is not None and found.child.sealed.ciphertext is not None
    assert SMALL not in found.child.sealed.ciphertext
    delivery = downloads.deliver(OWN, found.child, None, "10.0.0.9", lambda: True)
    assert await delivery.whole() == SMALL
    assert schools.files.chunks_read == 0
    await delivery.close()
    [entry] = schools.kept
    assert entry.receipt is not None and entry.receipt.complete and entry.receipt.via == "file"
    assert entry.pulled == (1, SCHOOL, found.child.sha256)  # the admitting school has it
    assert schools.audit.actions() == [("record_file.read", "ok")]


async def test_a_conditional_lookup_fetches_no_bytes() -> None:
    schools, downloads = await office(SMALL)
    found = await downloads.lookup(presented(OWN), G1, conditional=True)
    assert found.child is not None and found.child.sealed is not None
    assert found.child.sealed.ciphertext is None
    await downloads.not_modified(OWN, found.child, None)
    [entry] = schools.kept
    assert entry.receipt is not None and (entry.receipt.via, entry.receipt.bytes_sent) == (
        "not_modified",
        0,
    )


async def test_a_large_file_streams_and_is_kept_before_its_last_chunk() -> None:
    schools, downloads = await office(LARGE)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None and found.child.sealed is not None
    assert found.child.sealed.ciphertext is None
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: True)
    assert await delivery.whole() is None
    received, kept_when = [], []

    async def write(data: bytes) -> None:
        received.append(data)
        kept_when.append(len(schools.kept))

    await delivery.stream(write)
    await delivery.close()
    assert b"".join(received) == LARGE
    assert kept_when == [0, 0, 1]  # committed before the last bytes went, not after
    assert schools.files.chunks_read == 3 and len(schools.kept) == 1


async def test_a_range_is_kept_as_partial_and_not_as_pulled() -> None:
    schools, downloads = await office(SMALL)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None
    delivery = downloads.deliver(OWN, found.child, ByteRange(2, 9), None, lambda: True)
    assert await delivery.whole() == SMALL[2:10]
    [entry] = schools.kept
    assert entry.receipt is not None
    assert (entry.receipt.range_start, entry.receipt.range_end) == (2, 9)
    assert not entry.receipt.complete and entry.pulled is None
    assert schools.audit.entries[0].outcome == "partial"


async def test_a_download_cut_short_says_how_far_it_got() -> None:
    schools, downloads = await office(LARGE)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: True)
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        if written:
            raise ConnectionResetError("the client went away after the first chunk")
        written.append(data)

    with pytest.raises(ConnectionResetError):
        await delivery.stream(write)
    await delivery.close()
    [entry] = schools.kept
    assert entry.receipt is not None
    assert (entry.receipt.bytes_sent, entry.receipt.complete) == (CHUNK_BYTES, False)
    assert schools.audit.actions() == [("record_file.read", "aborted")]


async def test_a_client_gone_before_the_last_bytes_gets_no_complete_receipt() -> None:
    schools, downloads = await office(SMALL)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: False)
    with pytest.raises(ConnectionResetError):
        await delivery.whole()
    await delivery.close()
    assert [e.receipt.complete for e in schools.kept if e.receipt] == [False]


async def test_another_schools_child_is_not_found_and_the_refusal_audited() -> None:
    schools, downloads = await office(SMALL)
    found = await downloads.lookup(presented(STRANGER), G1, conditional=False)
    assert found.token is not None and found.child is None
    await downloads.refused(STRANGER, G1, "10.0.0.7")
    assert schools.audit.actions() == [("record_file.read", "not_found")]
    forged = PresentedToken(OWN.token_id, "a guess")
    assert (await downloads.lookup(forged, G1, conditional=False)).child is None


async def test_an_archive_holds_every_file_with_a_manifest_and_keeps_each() -> None:
    schools, downloads = await office(SMALL, LARGE)
    archive = b"".join([c async for c in downloads.archive(OWN, SCHOOL, 2026, None)])
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        assert z.namelist() == [f"{G1}.json", f"{G2}.json", "manifest.json"]
        manifest = orjson.loads(z.read("manifest.json"))
        assert z.read(f"{G2}.json") == LARGE
    assert [f["sha256"] for f in manifest["files"]] == [
        hashlib.sha256(SMALL).hexdigest(), hashlib.sha256(LARGE).hexdigest(),
    ]  # fmt: skip
    assert [e.receipt.via for e in schools.kept if e.receipt] == ["zip", "zip"]
    assert [e.pulled is not None for e in schools.kept] == [True, True]


async def test_an_erased_file_is_refused_as_gone_with_when_and_why() -> None:
    schools, downloads = await office(SMALL)
    sha = hashlib.sha256(SMALL).hexdigest()
    schools.files.erase(sha, "cancelled")
    found = await downloads.lookup(presented(OWN), G1, conditional=True)
    assert found.child is not None and not found.child.servable
    with pytest.raises(RecordFileGone) as refused:
        await downloads.unavailable(OWN, found.child, "10.0.0.9")
    assert refused.value.reason == "cancelled"
    assert refused.value.erased_at == schools.files.clock.now()
    assert "after the record was cancelled" in str(refused.value)
    assert schools.audit.actions() == [("record_file.read", "gone")]
    assert [e.receipt for e in schools.kept] == [None]  # nothing was sent


async def test_a_small_file_that_fails_authentication_is_refused_and_reported() -> None:
    schools, downloads = await office(SMALL)
    sha = hashlib.sha256(SMALL).hexdigest()
    schools.files.damage(sha)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None and found.child.servable  # not known to be damaged yet
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: True)
    with pytest.raises(RecordFileDamaged, match="fetched again"):
        await delivery.whole()
    await delivery.close()
    assert schools.files.damage_reports == [(sha, "download", G1)]
    assert schools.audit.actions() == [("record_file.read", "damaged")]
    # Marked now: the next lookup knows, and nothing is opened again.
    again = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert again.child is not None and not again.child.servable


async def test_a_large_file_that_fails_authentication_is_refused_before_anything_goes() -> None:
    schools, downloads = await office(LARGE)
    schools.files.damage(hashlib.sha256(LARGE).hexdigest())
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: True)
    assert await delivery.whole() is None
    started: list[bool] = []
    written: list[bytes] = []

    async def start() -> None:
        started.append(True)

    async def write(data: bytes) -> None:
        written.append(data)

    with pytest.raises(RecordFileDamaged):
        await delivery.stream(write, start=start)
    await delivery.close()
    assert (started, written) == ([], [])  # no header, no byte
    assert schools.audit.actions() == [("record_file.read", "damaged")]
    assert [e.receipt for e in schools.kept] == [None]


async def test_the_headers_go_once_the_first_chunk_is_opened() -> None:
    schools, downloads = await office(LARGE)
    found = await downloads.lookup(presented(OWN), G1, conditional=False)
    assert found.child is not None
    delivery = downloads.deliver(OWN, found.child, None, None, lambda: True)
    events: list[str] = []

    async def start() -> None:
        events.append(f"start after {schools.files.chunks_read} chunk")

    async def write(data: bytes) -> None:
        events.append("write")

    await delivery.stream(write, start=start)
    assert events == ["start after 1 chunk", "write", "write", "write"]


async def test_an_archive_lists_the_files_it_cannot_hold_and_why() -> None:
    third = b'{"student_number": "G110105201903070013"}'
    schools, downloads = await office(SMALL, LARGE)
    sha3 = hashlib.sha256(third).hexdigest()
    await schools.files.put(sha3, "application/json", third)
    schools.children.append(
        child_view(3, "G110105201903070013", SCHOOL, "110108", file_sha256=sha3,
                   file_size=len(third), file_media_type="application/json")
    )  # fmt: skip
    sha1, sha2 = hashlib.sha256(SMALL).hexdigest(), hashlib.sha256(LARGE).hexdigest()
    schools.files.erase(sha1)
    schools.files.damage(sha2)  # not known yet: found when its first chunk is opened
    archive = b"".join([c async for c in downloads.archive(OWN, SCHOOL, 2026, None)])
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        assert z.namelist() == ["G110105201903070013.json", "manifest.json"]
        assert z.read("G110105201903070013.json") == third
        manifest = orjson.loads(z.read("manifest.json"))
    assert [f["sha256"] for f in manifest["files"]] == [sha3]
    assert [(f["student_number"], f["reason"]) for f in manifest["not_included"]] == [
        (G1, "erased"), (G2, "damaged"),
    ]  # fmt: skip
    assert manifest["not_included"][0]["erased_at"] == schools.files.clock.now().isoformat()
    assert schools.files.damage_reports == [(sha2, "zip", G2)]
    assert [e.receipt.sha256 for e in schools.kept if e.receipt] == [sha3]
