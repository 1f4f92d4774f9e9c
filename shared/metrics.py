"""Prometheus metrics. Process counters for the HTTP app, plus gauges read from the database at
scrape time, which see the work of every process (workers included) without a push gateway."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from shared.db import session_scope
from shared.message_status import delays
from shared.models import Conversation, Destination, Message, OutboxEntry


class DatabaseCollector(Collector):
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[GaugeMetricFamily]:
        conversations = GaugeMetricFamily("lexdesk_conversations", "Conversations by state", labels=["state"])
        messages = GaugeMetricFamily("lexdesk_messages", "Messages by destination and status",
                                     labels=["destination", "status"])
        outbox = GaugeMetricFamily("lexdesk_outbox_pending", "Outbox entries not yet published")
        delayed = GaugeMetricFamily("lexdesk_messages_delayed",
                                    "Messages failing towards a destination for longer than LEXDESK_DELAYED_AFTER, "
                                    "still being retried", labels=["destination"])
        with session_scope(self.database_url) as session:
            for state, count in session.execute(select(Conversation.state, func.count()).group_by(Conversation.state)):
                conversations.add_metric([state], count)
            for destination, status, count in session.execute(
                select(Message.destination, Message.status, func.count()).group_by(Message.destination, Message.status)
            ):
                messages.add_metric([destination, status], count)
            outbox.add_metric([], session.scalar(select(func.count()).select_from(OutboxEntry)) or 0)
            now_delayed = delays(session)
            for destination in (Destination.LEX, Destination.TALKDESK):
                found = now_delayed.get(destination)
                delayed.add_metric([destination.value], found.messages if found else 0)
        yield conversations
        yield messages
        yield outbox
        yield delayed


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("lexdesk_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("lexdesk_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=registry)
