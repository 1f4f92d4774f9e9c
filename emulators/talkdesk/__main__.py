"""`python -m emulators.talkdesk [--port 8001] [--callback-url URL] [--state-file PATH] ...`: serve it."""

from __future__ import annotations

import argparse

from .app import run
from .config import EmulatorConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Talkdesk Digital Connect emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--callback-url", default=None, help="base URL of lexdesk's callback receiver")
    parser.add_argument("--callback-api-key", default=None)
    parser.add_argument("--touchpoint-id", default=EmulatorConfig().touchpoint_id)
    parser.add_argument(
        "--no-scripted-agent",
        action="store_true",
        help="nobody joins until a person takes the conversation at /console",
    )
    parser.add_argument("--agent-join-delay", type=float, default=EmulatorConfig().agent_join_delay)
    parser.add_argument("--agent-reply-delay", type=float, default=EmulatorConfig().agent_reply_delay)
    parser.add_argument(
        "--customer-typing-ttl",
        type=float,
        default=EmulatorConfig().customer_typing_ttl,
        help="seconds a customer's typing indicator lasts without a refresh",
    )
    parser.add_argument(
        "--state-file", default=None, help="SQLite file that keeps conversations, tokens and keys across restarts"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        callback_url=args.callback_url,
        callback_api_key=args.callback_api_key,
        touchpoint_id=args.touchpoint_id,
        scripted_agent=not args.no_scripted_agent,
        agent_join_delay=args.agent_join_delay,
        agent_reply_delay=args.agent_reply_delay,
        customer_typing_ttl=args.customer_typing_ttl,
        state_file=args.state_file,
        seed=args.seed,
    )
    print(f"Talkdesk emulator on http://{args.host}:{args.port} (agent console: /console)")
    run(args.host, args.port, config)


if __name__ == "__main__":
    main()
