"""What of a socket's `typing` frames the edge sends on (services/edge/sessions.py TypingThrottle)."""

from __future__ import annotations

from services.edge.sessions import TypingThrottle


def test_a_change_goes_at_once_and_a_repeat_only_as_a_refresh() -> None:
    throttle = TypingThrottle(refresh=4.0, min_interval=1.0)
    assert throttle.forward(True, now=0.0)
    assert not throttle.forward(True, now=2.0)  # still typing: nothing new
    assert throttle.forward(True, now=4.5)  # the refresh that keeps the agent's indicator alive
    assert throttle.forward(False, now=6.0)
    assert not throttle.forward(False, now=9.0)  # stopped is stopped: never refreshed


def test_a_flood_of_flips_costs_at_most_one_forward_per_interval() -> None:
    throttle = TypingThrottle(refresh=4.0, min_interval=1.0)
    forwarded = sum(throttle.forward(n % 2 == 0, now=n * 0.01) for n in range(1000))  # 100 flips a second
    assert forwarded == 10  # ten seconds of flooding, one a second
