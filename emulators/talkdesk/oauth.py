"""`POST /oauth/token` (client credentials) and the bearer-token check of the API routes."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import time
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .context import Emulator
from .errors import UNAUTHORIZED, TalkdeskError
from .state import Token

SCOPE = "digital-connect:write"


def _oauth_error(status_code: int, error: str, description: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Basic realm="talkdesk"'} if status_code == 401 else {}
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers={**headers, "Cache-Control": "no-store"},
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


def build_oauth_router(emu: Emulator) -> APIRouter:
    router = APIRouter()

    @router.post("/oauth/token", response_model=None)
    async def issue_token(request: Request) -> JSONResponse:
        await emu.faults.apply()
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        credentials = _basic_credentials(request.headers.get("authorization"))
        if credentials is None and "client_id" in form:
            credentials = (form["client_id"], form.get("client_secret", ""))
        if credentials is None:
            return _oauth_error(401, "invalid_client", "Client authentication is required.")
        client_id, secret = credentials
        if not (
            secrets.compare_digest(client_id, emu.config.client_id)
            and secrets.compare_digest(secret, emu.config.client_secret)
        ):
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        grant_type = form.get("grant_type")
        if not grant_type:
            return _oauth_error(400, "invalid_request", "grant_type is required.")
        if grant_type != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported.")
        requested = form.get("scope", SCOPE).split()
        if SCOPE not in requested:
            return _oauth_error(400, "invalid_scope", f"The scope must include {SCOPE}.")
        ttl = emu.config.token_ttl
        token = Token(secrets.token_urlsafe(32), client_id, SCOPE, time.time() + ttl)
        emu.store.add_token(token)
        emu.store.stats.tokens_issued += 1
        return JSONResponse(
            {
                "access_token": token.value,
                "token_type": "Bearer",
                "expires_in": math.ceil(ttl),
                "scope": SCOPE,
            },
            headers={"Cache-Control": "no-store"},
        )

    return router


def require_token(emu: Emulator, request: Request) -> Token:
    """The caller's valid bearer token, or a Talkdesk 401."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized("A bearer token is required.")
    token = emu.store.tokens.get(value.strip())
    if token is None:
        raise _unauthorized("The access token is not valid.")
    if token.expired():
        emu.store.drop_token(token.value)
        raise _unauthorized("The access token has expired.")
    return token


def _unauthorized(description: str) -> TalkdeskError:
    headers = {"WWW-Authenticate": 'Bearer realm="talkdesk"'}
    return TalkdeskError(401, UNAUTHORIZED, "Unauthorized", description, headers=headers)
