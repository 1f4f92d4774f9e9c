"""The FastAPI app of the Talkdesk emulator, and a blocking `run()` to serve it with uvicorn."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from .admin import build_admin_router
from .agent import Agent
from .api import build_api_router
from .config import EmulatorConfig
from .console import build_console_router
from .context import Emulator
from .errors import TalkdeskError, talkdesk_error_handler
from .faults import FaultInjector, FaultSettings
from .oauth import build_oauth_router
from .persistence import StateFile, StateFileError
from .state import Store


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    config = config or EmulatorConfig()
    store = Store(StateFile(config.state_file) if config.state_file else None)
    faults = FaultInjector(FaultSettings.from_config(config), random.Random(config.seed), store.stats)
    emu = Emulator(config=config, store=store, faults=faults, agent=Agent(config, store))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await emu.agent.start()
        if store.persistent:
            emu.agent.resume()
        try:
            yield
        finally:
            await emu.agent.stop()
            store.close()

    app = FastAPI(title="Talkdesk Digital Connect emulator", lifespan=lifespan)
    app.state.emulator = emu
    app.add_exception_handler(TalkdeskError, talkdesk_error_handler)
    app.include_router(build_oauth_router(emu))
    app.include_router(build_api_router(emu))
    app.include_router(build_admin_router(emu))
    app.include_router(build_console_router())
    return app


def run(host: str = "127.0.0.1", port: int = 8001, config: EmulatorConfig | None = None) -> None:
    """Serve the emulator until interrupted; a state file it cannot use ends it with a one-line reason."""
    try:
        app = create_app(config)
    except StateFileError as exc:
        raise SystemExit(f"talkdesk emulator: {exc}") from None
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
