"""The Talkdesk emulator as the bench runs it: `lexdesk emulate talkdesk` with the same options, plus one
bench-only route to change the scripted agent's reply delay while it runs, which the emulator's own knobs
(/_emulator/faults: latency, errors, stalls) do not cover.

    PUT /_bench/agent {"agent_reply_delay": 0}   → {"agent_reply_delay": 0.0, "previous": 0.3}

The agent reads the delay from its config for each message it queues (emulators/talkdesk/agent.py), so a
change applies to the next customer message. The bench sets it to 0 for its fixed-concurrency phase, so
that what is measured is lexdesk, not a vendor's think time; the earlier phases keep the default.

`python -m tools.bench.emulator --port 8001 --callback-url URL --callback-api-key KEY --agent-join-delay 0.1`
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

AGENT_ROUTE = "/_bench/agent"


class AgentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_reply_delay: float = Field(ge=0, le=60)


def build_app(argv: Sequence[str]) -> tuple[Any, str, int]:
    """The emulator's app with the bench route, and where to serve it. `argv` are the options of
    `lexdesk emulate talkdesk` (an unknown one is an error, so a new harness option is not lost)."""
    from emulators.talkdesk.app import create_app
    from emulators.talkdesk.config import EmulatorConfig

    parser = argparse.ArgumentParser(prog="python -m tools.bench.emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--callback-url", default=None)
    parser.add_argument("--callback-api-key", default=None)
    parser.add_argument("--agent-join-delay", type=float, default=2.0)
    parser.add_argument("--scripted-agent", dest="scripted_agent", action="store_true", default=True)
    parser.add_argument("--no-scripted-agent", dest="scripted_agent", action="store_false")
    args = parser.parse_args(list(argv))
    config = EmulatorConfig(callback_url=args.callback_url, callback_api_key=args.callback_api_key,
                            agent_join_delay=args.agent_join_delay, scripted_agent=args.scripted_agent)
    app = create_app(config)

    @app.put(AGENT_ROUTE)
    async def change_agent(change: AgentChange) -> dict[str, float]:
        # The Emulator's config is the object its Agent reads (emulators/talkdesk/app.py: create_app).
        config = app.state.emulator.config
        previous, config.agent_reply_delay = config.agent_reply_delay, change.agent_reply_delay
        return {"agent_reply_delay": config.agent_reply_delay, "previous": previous}

    return app, args.host, args.port


def main(argv: Sequence[str] | None = None) -> None:
    import sys

    import uvicorn

    app, host, port = build_app(sys.argv[1:] if argv is None else argv)
    # As emulators/talkdesk/app.py: run() serves it.
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
