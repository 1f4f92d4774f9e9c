"""The chaos suite (`lexdesk chaos`): many concurrent conversations on real processes, a private
PostgreSQL and RabbitMQ, while workers, the broker, the database, an edge node and Talkdesk fail; then
what was lost, duplicated, reordered, dead-lettered and replayed, counted from both ends."""

from lexdesk.chaos.plan import ChaosPlan, FaultPlan
from lexdesk.chaos.report import ChaosReport
from lexdesk.chaos.run import main

__all__ = ["ChaosPlan", "ChaosReport", "FaultPlan", "main"]
