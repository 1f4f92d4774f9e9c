"""The worker entry point (`celery -A workers.app worker -Q lex`): the Celery app with every task
module registered, one module per queue, and the periodic schedule for the `timers` queue."""

from __future__ import annotations

from shared.logging import configure_logging
from workers import lex, routing, talkdesk, timers
from workers.base import app, settings

TASK_MODULES = (routing, lex, talkdesk, timers)

configure_logging("worker")
settings().require("data_key")  # routing seals card data with it, lex unseals it
app.conf.beat_schedule = {
    "sweep": {"task": "timers.sweep", "schedule": settings().sweep_interval},
    "close-inactive": {"task": "timers.close_inactive", "schedule": 60.0},
}

__all__ = ["TASK_MODULES", "app"]
