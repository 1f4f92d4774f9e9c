"""Attacks on the HTTP app (issue 7, findings 5 and 7), against a real `lexdesk callback` process: slow-loris
connections are closed by a deadline the settings set while other requests are served, the connection and
header-size limits hold, the API schema and its viewers need the operator token, and every Talkdesk and
operator route answers 401 to a caller without the right credential before it looks at the body."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from services.callback.app import create_app
from shared.migrate import upgrade
from shared.settings import load_settings
from tools.harness.servers import free_port
from tools.harness.system import LEXDESK, Proc

REQUEST_TIMEOUT = 2.0
MAX_CONNECTIONS = 40
MAX_HEADER_BYTES = 8192


@dataclass(frozen=True)
class Http:
    url: str
    port: int
    api_key: str
    admin_token: str
    env: dict[str, str]
    proc: Proc


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, rabbitmq_url: str) -> Iterator[Http]:
    """`lexdesk callback` alone (no edge or workers: these attacks need none), with tight HTTP limits."""
    workdir: Path = tmp_path_factory.mktemp("http-hardening")
    upgrade(postgres_url)
    port = free_port()
    api_key, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LEXDESK_")},
        "LEXDESK_STATE_DIR": str(workdir / "state"),
        "LEXDESK_DATABASE_URL": postgres_url,
        "LEXDESK_BROKER_URL": rabbitmq_url,
        "LEXDESK_HTTP_PORT": str(port),
        "LEXDESK_CALLBACK_API_KEY": api_key,
        "LEXDESK_ADMIN_TOKEN": admin_token,
        "LEXDESK_RESUME_TOKEN_SECRET": secrets.token_urlsafe(24),
        "LEXDESK_DATA_KEY": secrets.token_urlsafe(24),
        "LEXDESK_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
        "LEXDESK_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        "LEXDESK_HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    }
    url = f"http://127.0.0.1:{port}"
    proc = Proc("callback", [*LEXDESK, "callback"], env, workdir / "callback.log", f"http:{url}/healthz")
    proc.start()
    try:
        yield Http(url, port, api_key, admin_token, env, proc)
    finally:
        proc.stop()


async def hold(port: int, first: bytes, trickle: bytes = b"", until: float = 0.0) -> float | None:
    """Open a connection, send `first` (an unfinished request) and hold it, sending `trickle` every 0.3 s
    if given (which resets any idle timer); seconds until the server closed it, None if still open at
    `until`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(first)
        await writer.drain()
        while time.monotonic() < until:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.3)
            except TimeoutError:
                if trickle:
                    writer.write(trickle)
                    await writer.drain()
                continue
            if not data:
                return time.monotonic() - started
    except OSError:  # reset, or a write into a closed connection
        return time.monotonic() - started
    finally:
        writer.close()
    return None


def unfinished_requests(api_key: str) -> list[tuple[bytes, bytes]]:
    """(what is sent at once, what trickles after) for the ways of never finishing a request."""
    line = b"POST /talkdesk/webhook HT"
    headers = b"POST /talkdesk/webhook HTTP/1.1\r\nHost: lexdesk\r\nContent-Type: application/json\r\n"
    body = (b"POST /talkdesk/webhook HTTP/1.1\r\nHost: lexdesk\r\nX-Api-Key: " + api_key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    return ([(line, b"")] * 5 + [(headers, b"")] * 5 + [(headers + b"X-Slow: ", b"a")] * 5
            + [(body, b" ")] * 5)


def test_slow_loris_connections_are_closed_by_the_request_timeout_and_others_are_served(http: Http) -> None:
    async def scenario() -> None:
        until = time.monotonic() + REQUEST_TIMEOUT + 5
        held = [asyncio.create_task(hold(http.port, first, trickle, until))
                for first, trickle in unfinished_requests(http.api_key)]
        async with httpx.AsyncClient(base_url=http.url, timeout=3) as client:
            for _ in range(3):  # a normal request meanwhile is answered at once
                await asyncio.sleep(0.5)
                sent = time.monotonic()
                response = await client.get("/healthz")
                assert response.status_code == 200 and time.monotonic() - sent < 1.0, response
        closed_after = await asyncio.gather(*held)
        assert None not in closed_after, (closed_after, http.proc.tail())
        # Closed by the deadline the setting sets: not earlier, and not much later.
        assert all(REQUEST_TIMEOUT - 0.3 <= t <= REQUEST_TIMEOUT + 2.5 for t in closed_after if t), closed_after

    asyncio.run(scenario())


def test_connections_beyond_the_limit_get_503_until_they_are_closed(http: Http) -> None:
    async def scenario() -> None:
        until = time.monotonic() + REQUEST_TIMEOUT + 5
        first = b"GET /healthz HTTP/1.1\r\nHost: lexdesk\r\n"
        held = [asyncio.create_task(hold(http.port, first, b"", until)) for _ in range(MAX_CONNECTIONS + 5)]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=http.url, timeout=3) as client:
            assert (await client.get("/healthz")).status_code == 503
            closed_after = await asyncio.gather(*held)
            assert None not in closed_after, closed_after
            assert (await client.get("/healthz")).status_code == 200

    asyncio.run(scenario())


def test_headers_over_the_size_limit_are_refused_as_they_arrive(http: Http) -> None:
    async def scenario() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        try:
            # Never finished, so only the size can stop it; well under uvicorn's own default of 16 KiB.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: lexdesk\r\nX-Pad: " + b"p" * (MAX_HEADER_BYTES + 2000))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(65536), 1.0)
            assert answer.startswith(b"HTTP/1.1 4"), answer[:200]
        finally:
            writer.close()
        with httpx.Client(base_url=http.url, timeout=3) as client:  # a header block within the limit is fine
            assert client.get("/healthz", headers={"X-Pad": "p" * (MAX_HEADER_BYTES // 2)}).status_code == 200

    asyncio.run(scenario())


def test_api_schema_and_docs_need_the_operator_token(http: Http) -> None:
    with httpx.Client(base_url=http.url, timeout=5) as anonymous:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            response = anonymous.get(path)
            assert response.status_code == 404, (path, response.status_code, response.text[:200])
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Api-Key": http.api_key}):
            response = anonymous.get("/api/openapi.json", headers=headers)
            assert response.status_code == 401 and response.json()["error"] == "unauthorized", response.text
        response = anonymous.get("/api/openapi.json", headers={"Authorization": f"Bearer {http.admin_token}"})
    assert response.status_code == 200, response.text
    paths = response.json()["paths"]
    assert "/talkdesk/webhook" in paths and "/api/dead-letters/replay" in paths, sorted(paths)
    assert "/api/openapi.json" not in paths


def guarded_routes(http: Http) -> list[tuple[str, str, str]]:
    """(method, path, credential kind) of every route the app serves under /talkdesk/ and the Lex code
    hook (Talkdesk's key) and the operator's (/api/, /readyz, /metrics: the bearer token), from the app
    itself."""
    app = create_app(load_settings({k: v for k, v in http.env.items() if k.startswith("LEXDESK_")}))
    routes = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        path = route.path.replace("{conversation_id}", "some-conversation")
        if path.startswith("/talkdesk/") or path == "/lex/code-hook":
            kind = "talkdesk"
        elif path.startswith("/api/") or path in ("/readyz", "/metrics"):
            kind = "operator"
        else:
            continue
        routes += [(method, path, kind) for method in sorted(route.methods)]
    return routes


def test_every_guarded_route_answers_401_before_it_looks_at_the_body(http: Http) -> None:
    routes = guarded_routes(http)
    assert {(m, p) for m, p, _ in routes} >= {
        ("POST", "/talkdesk/conversations/some-conversation/messages"), ("POST", "/talkdesk/webhook"),
        ("POST", "/talkdesk/conversations/some-conversation/agent-joined"),
        ("POST", "/talkdesk/conversations/some-conversation/close"), ("GET", "/api/conversations"),
        ("GET", "/api/conversations/some-conversation"), ("GET", "/api/dead-letters"),
        ("POST", "/api/dead-letters/replay"), ("GET", "/readyz"), ("GET", "/metrics"),
        ("POST", "/lex/code-hook")}, routes
    bodies: list[tuple[bytes, dict[str, str]]] = [
        (b"this is not JSON", {"Content-Type": "application/json"}),
        (b'{"id": 5, "content": [], "event": "nope", "ids": "x", "dry_run": "maybe"}',
         {"Content-Type": "application/json"}),
        (b'{"id": "m", "content": "' + b"x" * 70_000 + b'"}', {"Content-Type": "application/json"}),  # over 64 KiB
        (b"\xff\xfe not even UTF-8", {"Content-Type": "application/json"}),
    ]
    with httpx.Client(base_url=http.url, timeout=10) as client:
        for method, path, kind in routes:
            # The credential missing, wrong, or the other party's.
            wrong: list[dict[str, str]] = [{}, {"X-Api-Key": "wrong"}, {"Authorization": "Bearer wrong"}]
            wrong.append({"Authorization": f"Bearer {http.admin_token}"} if kind == "talkdesk"
                         else {"X-Api-Key": http.api_key})
            for credential in wrong:
                for body, headers in bodies:
                    response = client.request(method, path, content=body if method == "POST" else None,
                                              params={"limit": "many", "offset": "-1"},
                                              headers={**headers, **credential})
                    assert response.status_code == 401, (method, path, credential, body[:40], response.text[:200])
                    assert response.json()["error"] == "unauthorized", response.text
        # With the right key the same malformed body is still the documented 422.
        response = client.post("/talkdesk/conversations/some-conversation/messages", content=b"this is not JSON",
                               headers={"Content-Type": "application/json", "X-Api-Key": http.api_key})
        assert response.status_code == 422 and response.json()["error"] == "invalid_body", response.text
