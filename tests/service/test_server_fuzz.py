"""Hypothesis against a real running server: generated methods, paths, headers and bodies never get
a 500, and every 4xx comes with a JSON body."""

from __future__ import annotations

import json

import anyio.from_thread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service.helpers import lavfi, served

PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
METHODS = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"])
PATHS = st.sampled_from(["/status", "/sources", "/metrics", "/readyz", "/healthz", "/sources/cam1",
                         "/sources/cam1/pause", "/sources/cam1/resume", "/nowhere"]) | PRINTABLE.map(lambda id: f"/sources/{id}/pause")
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | PRINTABLE,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(PRINTABLE, inner, max_size=3), max_leaves=12)
TABLES = st.fixed_dictionaries({"type": st.sampled_from(["lavfi", "file", "rtsp", "hls", "webcam", "?"])},
                               optional={"id": PRINTABLE, "graph": PRINTABLE, "path": PRINTABLE, "url": PRINTABLE, "options": JSON})
BODIES = (st.none() | TABLES.map(lambda t: json.dumps(t).encode()) | JSON.map(lambda v: json.dumps(v).encode())
          | st.binary(max_size=64) | st.integers(30, 3000).map(lambda n: b"[" * n + b"]" * n))
HEADERS = st.fixed_dictionaries({}, optional={
    "Host": st.sampled_from(["evil.example", "localhost", "[::1", "a:b", ""]) | PRINTABLE,
    "Origin": st.sampled_from(["http://evil.example", "null"]) | PRINTABLE,
    "Content-Type": st.sampled_from(["application/json", "text/plain", "multipart/form-data", "application/json; charset=utf-8"]) | PRINTABLE,
    "Authorization": PRINTABLE,
})


def test_server_when_fuzzed_never_answers_500_and_every_4xx_is_json(centerface):
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(served(centerface, lavfi("cam1"))) as (stream, server, http):

            async def send(method, path, headers, body):
                async with http.request(method, path, headers=headers, data=body) as response:
                    text = await response.read()
                    if response.status == 201:  # a generated table that is valid: take it away again
                        stream.remove_source(json.loads(text)["id"])
                    return response.status, text

            @settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
            @given(METHODS, PATHS, HEADERS, BODIES)
            def answers_below_500(method, path, headers, body):
                status, text = portal.call(send, method, path, headers, body)
                not_ready = path == "/readyz" and status == 503  # a documented answer (a DELETE took cam1 away)
                assert status < 500 or not_ready, (method, path, headers, body, text)
                if 400 <= status < 500 and method != "HEAD":
                    assert json.loads(text)["status"] == status, text

            answers_below_500()
