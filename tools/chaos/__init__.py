"""The chaos suite (`lexdesk chaos`): many concurrent conversations on real processes, a private
PostgreSQL and RabbitMQ, while workers, the broker, the database, an edge node and Talkdesk fail; then
what was lost, duplicated, reordered, dead-lettered and replayed, counted from both ends.

The entry points are `tools.chaos.run.main` and `tools.chaos.plan.ChaosPlan`; this package imports
nothing, so that loading the command (`tools.chaos.cli`) stays cheap."""
