"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled often.

kombu hands every transport option of this transport to `create_engine`, so its polling interval
(1 s by default, which would put seconds of latency on each hop of a chat message) cannot be set
through options; this subclass sets it instead, and `sqla+` URLs resolve to it (kombu's alias table
is the documented way to plug in a transport)."""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy


class Transport(kombu_sqlalchemy.Transport):
    polling_interval = 0.05


def install() -> None:
    TRANSPORT_ALIASES["sqla"] = f"{__name__}:Transport"
