"""Celery's consumer, except that a message it cannot decode is rejected (to the dead-letter queue)
instead of acknowledged: Celery's default deletes it so it cannot loop, which also loses it."""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

from workers.base import log


class Consumer(CeleryConsumer):
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        log.critical("undecodable_task_message", error=repr(exc), content_type=message.content_type,
                     routing_key=message.delivery_info.get("routing_key"), body=repr(message.body)[:500])
        message.reject(requeue=False)
