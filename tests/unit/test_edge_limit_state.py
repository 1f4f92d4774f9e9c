"""The edge's in-memory limit state (services/edge/sessions.py) stays as small as the traffic of the last
window: an attacker rotating addresses or conversations cannot grow it without bound, and what it
forgets is exactly what a fresh count would say."""

from __future__ import annotations

import time

from services.edge.sessions import AddressLimits, KeyedRateLimiters, SlidingWindowCounter, client_key

WINDOW = 0.2


def test_rate_limiters_per_key_forget_idle_keys_and_keep_counting_active_ones() -> None:
    limiters = KeyedRateLimiters(capacity=3, window=WINDOW)
    for n in range(5000):  # a flood of one message from each of many addresses
        assert limiters.get(f"10.0.{n // 250}.{n % 250}").allow()
    assert len(limiters) == 5000
    busy = limiters.get("busy")
    assert [busy.allow() for _ in range(4)] == [True, True, True, False]
    time.sleep(WINDOW * 1.1)
    assert limiters.get("busy").ready()  # refilled, as a new bucket would be
    assert len(limiters) == 1  # the rest were full again, so they went


def test_sliding_window_counts_exactly_and_forgets_empty_keys() -> None:
    counter = SlidingWindowCounter(limit=3, window=WINDOW)
    assert [counter.allow("a") for _ in range(5)] == [True, True, True, False, False]
    for n in range(2000):
        counter.allow(f"b{n}")
    time.sleep(WINDOW * 1.1)
    assert counter.allow("a")  # the window slid past the first three
    assert len(counter) == 1


def test_address_counts_return_to_nothing_when_sockets_go() -> None:
    limits = AddressLimits(max_sockets=2, max_unstarted=1, new_sockets=10, new_sockets_window=60,
                           new_conversations=1, new_conversations_window=60)
    first = limits.admit("192.0.2.1")
    assert not isinstance(first, str)
    assert "without hello" in str(limits.admit("192.0.2.1"))
    limits.start(first)
    second = limits.admit("192.0.2.1")
    assert not isinstance(second, str)
    assert "open sockets" in str(limits.admit("192.0.2.1"))
    for admission in (first, second, second):  # a second release changes nothing
        limits.release(admission)
    assert limits.open_sockets("192.0.2.1") == 0
    assert not isinstance(limits.admit("192.0.2.1"), str)
    assert limits.allow_conversation("192.0.2.1") and not limits.allow_conversation("192.0.2.1")


def test_an_ipv6_network_is_one_client() -> None:
    assert client_key("2001:db8:0:1::5") == client_key("2001:db8:0:1:ffff::9") == "2001:db8:0:1::/64"
    assert client_key("2001:db8:0:2::5") != client_key("2001:db8:0:1::5")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
