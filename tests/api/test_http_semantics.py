"""HTTP as RFC 9110 says, on every route: the school API, the operators' API, the console,
health and metrics.

HEAD wherever GET is (no body), 405 with Allow, 501 for a method nobody knows, 413 for a
body over the limit (declared or chunked), every refusal as problem+json, 401 naming its
scheme, a Server header without versions, nosniff everywhere, and never a second answer
inside a started one. Record files go out only as the media types the contract allows,
as attachments, sandboxed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.support.school_api import SAME_COUNTY_SCHOOL, SCHOOL, SchoolApiEnv

pytestmark = pytest.mark.live

PROBLEM = "application/problem+json"
LIMIT = 64 * 1024


def number_of(env: SchoolApiEnv, index: int = 0, school: str = SAME_COUNTY_SCHOOL) -> str:
    return env.children_of(school)[index].final_student_number


def get_routes(env: SchoolApiEnv) -> list[tuple[str, str | None]]:
    """Every GET route of the bridge, with a caller it answers 200."""
    n = number_of(env)
    return [
        ("/healthz", None), ("/readyz", None), ("/metrics", None),
        ("/v1/openapi.json", None), ("/v1/docs", None), ("/console/login", None),
        (f"/v1/schools/{SCHOOL}/handoffs", "school"), (f"/v1/handoffs/{n}", "county"),
        (f"/v1/handoffs/{n}/record-file", "county"),
        (f"/v1/schools/{SCHOOL}/record-files.zip", "school"),
        (f"/v1/audit?student_number={n}", "province"),
        ("/v1/operator/reconciliations", "province"), ("/v1/operator/parked", "province"),
        ("/v1/operator/set-aside", "province"), ("/v1/operator/retries", "province"),
    ]  # fmt: skip


async def raw(env: SchoolApiEnv, request: bytes) -> bytes:
    """Send *request* as it is and read until the server closes the connection."""
    where = urlsplit(env.url)
    assert where.hostname and where.port
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), 10)
    finally:
        writer.close()


def request_bytes(method: str, path: str, token: str | None = None, close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bridge"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_head_answers_wherever_get_does_without_a_body(api_env: SchoolApiEnv) -> None:
    for path, who in get_routes(api_env):
        got = await api_env.call("GET", path, who)
        head = await api_env.call("HEAD", path, who)
        assert (head.status, head.body) == (got.status, b""), path
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
        token = api_env.tokens[who] if who else None
        # On the wire: the headers, then nothing (a body would be read as the next answer).
        wire = await raw(api_env, request_bytes("HEAD", path, token))
        assert wire.startswith(b"HTTP/1.1 200"), (path, wire[:200])
        assert wire.endswith(b"\r\n\r\n"), (path, wire[-200:])


async def test_head_of_a_record_file_is_audited_and_not_a_download(api_env: SchoolApiEnv) -> None:
    n = number_of(api_env, 1)
    head = await api_env.call("HEAD", f"/v1/handoffs/{n}/record-file", "other_school")
    assert head.status == 200 and head.body == b""
    got = await api_env.call("GET", f"/v1/handoffs/{n}/record-file", "county")
    assert int(head.headers["Content-Length"]) == len(got.body)
    assert head.headers["ETag"] == got.headers["ETag"]
    trail = await api_env.call("GET", f"/v1/audit?student_number={n}", "province")
    actions = [(e["action"], e["actor"]) for e in trail.json()["items"]]
    assert ("record_file.head", api_env.token_ids["other_school"]) in actions
    summary = await api_env.call("GET", f"/v1/handoffs/{n}", "other_school")
    assert summary.json()["state"] == "not_pulled"  # asking for the size is no download


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/handoffs/{n}", {"GET", "HEAD"}),
        ("PUT", "/v1/handoffs/{n}/arrival", {"POST"}),
        ("POST", "/v1/handoffs/{n}/record-file", {"GET", "HEAD"}),
        ("PATCH", "/v1/schools/" + SCHOOL + "/handoffs", {"GET", "HEAD"}),
        ("PUT", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/v1/operator/reconciliations", {"GET", "HEAD", "POST"}),
        ("POST", "/console/report", {"GET", "HEAD"}),
        ("OPTIONS", "/metrics", {"GET", "HEAD"}),
    ],
)
async def test_a_known_path_with_another_method_is_405_with_allow(
    api_env: SchoolApiEnv, method: str, path: str, allowed: set[str]
) -> None:
    answer = await api_env.call(method, path.format(n=number_of(api_env)), "province")
    assert answer.status == 405, answer.body[:300]
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    assert answer.json()["code"] == "method_not_allowed"
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == allowed


@pytest.mark.parametrize("method", ["BREW", "PROPFIND", "FOO-BAR"])
@pytest.mark.parametrize("path", ["/healthz", "/v1/handoffs/G1", "/console/", "/nowhere"])
async def test_a_method_nobody_knows_is_501(api_env: SchoolApiEnv, method: str, path: str) -> None:
    answer = await api_env.call(method, path, "province")
    assert answer.status == 501, answer.body[:300]
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    assert answer.json()["code"] == "not_implemented"


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 8192):
        yield b" " * 8192


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    ("path", "who", "kind"),
    [
        ("/v1/handoffs/{n}/arrival", "other_school", "application/json"),
        ("/v1/operator/reconciliations", "province", "application/json"),
        ("/console/login", None, "application/x-www-form-urlencoded"),
        ("/healthz", None, "application/json"),
    ],
)
async def test_a_body_over_the_limit_is_413(
    api_env: SchoolApiEnv, path: str, who: str | None, kind: str, chunked: bool
) -> None:
    size = LIMIT + 16 * 1024
    body = chunks(size) if chunked else b" " * size
    method = "GET" if path == "/healthz" else "POST"
    answer = await api_env.call(
        method, path.format(n=number_of(api_env)), who, data=body, headers={"Content-Type": kind}
    )
    assert answer.status == 413, answer.body[:300]
    assert answer.headers["Content-Type"].startswith(PROBLEM)
    assert answer.json()["code"] == "too_large"


async def test_a_401_names_its_scheme(api_env: SchoolApiEnv) -> None:
    for who in (None, "bad", "sealed"):
        answer = await api_env.call("GET", f"/v1/handoffs/{number_of(api_env)}", who)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_every_answer_names_no_versions_and_forbids_sniffing(api_env: SchoolApiEnv) -> None:
    paths = [*(p for p, _ in get_routes(api_env)), "/nowhere", "/v1/handoffs/G1%0A"]
    for path in paths:
        for who in (None, "province"):
            answer = await api_env.call("GET", path, who)
            assert answer.headers["Server"] == "xueji-bridge", path
            assert answer.headers["X-Content-Type-Options"] == "nosniff", path
    for request in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
                    b"BREW /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):  # fmt: skip
        wire = await raw(api_env, request)
        head = wire.split(b"\r\n\r\n", 1)[0].lower()
        assert b"aiohttp" not in head and b"python" not in head, wire[:300]


async def test_unknown_paths_and_values_with_a_newline_are_problems(api_env: SchoolApiEnv) -> None:
    n = number_of(api_env)
    for path, who in (("/nowhere", "province"), (f"/v1/handoffs/{n}%0A", "province"),
                      (f"/v1/handoffs/{n}%0A/record-file", "province"),
                      (f"/v1/schools/{SCHOOL}%0A/record-files.zip", "school")):  # fmt: skip
        answer = await api_env.call("GET", path, who)
        assert answer.status == 404, path
        assert answer.headers["Content-Type"].startswith(PROBLEM), path
        assert answer.json()["code"] == "not_found"


async def test_after_a_refusal_the_connection_answers_the_next_request(
    api_env: SchoolApiEnv,
) -> None:
    n = number_of(api_env)
    token = api_env.tokens["province"]
    wire = await raw(
        api_env,
        request_bytes("GET", f"/v1/handoffs/{n}%0A/record-file", token, close=False)
        + request_bytes("GET", "/healthz"),
    )
    # Two answers, one after the other: a 404 problem, then the health check.
    assert wire.count(b"HTTP/1.1 ") == 2, wire[:600]
    first, second = wire.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"404") and second.startswith(b"200")
    assert b"transfer-encoding: chunked" not in first.lower()


async def test_a_record_file_goes_out_as_an_attachment_of_an_allowed_media_type(
    api_env: SchoolApiEnv,
) -> None:
    n = number_of(api_env, 2)
    path = f"/v1/handoffs/{n}/record-file"
    json_file = await api_env.call("GET", path, "county")
    assert json_file.headers["Content-Type"] == "application/json"
    sha = json_file.headers["ETag"].strip('"')
    pool = api_env.bridge.pool
    declared = await pool.fetchval("SELECT media_type FROM record_files WHERE sha256 = $1", sha)
    try:
        for publisher_said in ("text/html", "TEXT/HTML; charset=utf-8", "image/svg+xml"):
            await pool.execute(
                "UPDATE record_files SET media_type = $2 WHERE sha256 = $1", sha, publisher_said
            )
            for method in ("GET", "HEAD"):
                answer = await api_env.call(method, path, "county")
                assert answer.status == 200
                assert answer.headers["Content-Type"] == "application/octet-stream"
                assert answer.headers["Content-Disposition"].startswith("attachment")
                assert answer.headers["X-Content-Type-Options"] == "nosniff"
                assert "sandbox" in answer.headers["Content-Security-Policy"]
    finally:
        await pool.execute(
            "UPDATE record_files SET media_type = $2 WHERE sha256 = $1", sha, declared
        )
    assert json_file.headers["Content-Disposition"] == f'attachment; filename="{n}.json"'


async def test_operators_in_scope_download_audited_as_operators_the_zip_is_the_schools(
    api_env: SchoolApiEnv,
) -> None:
    n = number_of(api_env, 0, SCHOOL)
    for operator in ("county", "province"):
        answer = await api_env.call("GET", f"/v1/handoffs/{n}/record-file", operator)
        assert answer.status == 200
        zipped = await api_env.call("GET", f"/v1/schools/{SCHOOL}/record-files.zip", operator)
        assert zipped.status == 403 and zipped.json()["code"] == "forbidden"
    far = await api_env.call("GET", f"/v1/handoffs/{n}/record-file", "other_county")
    assert far.status == 404
    trail = await api_env.call("GET", f"/v1/audit?student_number={n}", "province")
    readers = {
        e["actor"]: e["detail"].get("reader")
        for e in trail.json()["items"] if e["action"] == "record_file.read"
    }  # fmt: skip
    assert readers[api_env.token_ids["county"]] == "operator"
    assert readers[api_env.token_ids["province"]] == "operator"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        # A valid multipart form: the console's forms are URL-encoded, so it says so.
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; "
         b'name="token"\r\n\r\nx\r\n--b--\r\n', 415),
        ("multipart/form-data", b"token=x", 415),
        ("application/x-www-form-urlencoded; charset=nope", b"token=x", 400),
        ("application/x-www-form-urlencoded", b"tok\xffen=x", 400),
    ],
)  # fmt: skip
async def test_a_console_form_the_console_cannot_read_is_a_page_not_a_500(
    api_env: SchoolApiEnv, content_type: str, body: bytes, status: int
) -> None:
    answer = await api_env.call(
        "POST", "/console/login", None, data=body, headers={"Content-Type": content_type}
    )
    assert answer.status == status, answer.body[:300]
    assert answer.headers["Content-Type"].startswith("text/html")


async def test_a_body_that_cannot_be_decoded_as_its_encoding_says_is_a_400_problem(
    api_env: SchoolApiEnv,
) -> None:
    for path in ("/console/login", f"/v1/handoffs/{number_of(api_env)}/arrival"):
        answer = await api_env.call(
            "POST", path, "school", data=b"not gzip at all",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )  # fmt: skip
        assert answer.status == 400, (path, answer.body[:300])
        assert answer.headers["Content-Type"].startswith(PROBLEM)


async def test_a_range_with_a_number_too_long_to_be_a_size_gets_the_whole_file(
    api_env: SchoolApiEnv,
) -> None:
    path = f"/v1/handoffs/{number_of(api_env)}/record-file"
    whole = await api_env.call("GET", path, "county")
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000):
        answer = await api_env.call("GET", path, "county", headers={"Range": header})
        assert (answer.status, answer.body) == (200, whole.body)
