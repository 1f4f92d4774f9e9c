"""GET /console: a self-contained agent console (HTML + vanilla JS polling the /_emulator routes, no build
step, nothing loaded from elsewhere)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

CONSOLE_FILE = Path(__file__).with_name("console.html")


@cache
def console_html() -> str:
    """The page, read once from console.html beside this module."""
    return CONSOLE_FILE.read_text(encoding="utf-8")


def build_console_router() -> APIRouter:
    router = APIRouter()

    @router.get("/console", response_class=HTMLResponse)
    async def console() -> HTMLResponse:
        return HTMLResponse(console_html(), headers={"Cache-Control": "no-store"})

    @router.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        """No icon, and no 404 in the browser's console for the one it asks for anyway."""
        return Response(status_code=204)

    return router
