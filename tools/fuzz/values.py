"""Hypothesis strategies for the values that break parsers and databases, shared by the WebSocket
and the callback fuzzers: odd unicode, numbers at and beyond every integer width, floats JSON cannot
carry, strings at the protocol's length limits, deep nesting.

Big values are built from a drawn size rather than drawn character by character: Hypothesis is slow
at (and its health checks object to) kilobytes of drawn text, and the size is what matters there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import strategies as st

# The builders are cached: Hypothesis is slow to take in new strategy objects, and a composite that
# built them on every draw spent most of the run doing that.

# Characters that have broken chat systems: NUL (PostgreSQL text cannot hold it), right-to-left and
# zero-width marks, a BOM, combining marks, astral-plane emoji, the last code points of the BMP, and
# lone surrogates (valid JSON escapes, invalid UTF-8: Python strings can hold them, encoders choke).
SPECIAL_CHARS = ("\x00", "\x01", "\x1b", "\x7f", "\u0085", "\u2028", "\u2029", "\u202e", "\u200f", "\u200b", "\ufeff",
                 "e\u0301", "\U0001f600", "\U0001f1fa\U0001f1f8", "\uffff", "\ufffd", "\U0010ffff", "\ud800", "\udfff",
                 "\ud83d", "\\", '"', "'", "<script>", "%s", "${x}", "{{x}}", "../", "\r\n", "\t")
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Integers around every width a database or a JSON parser might use, and beyond.
EDGE_INTS = (0, -1, 1, 2**15, 2**31 - 1, 2**31, -(2**31) - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64,
             10**30, -(10**30))
EDGE_FLOATS = (0.0, -0.0, 0.5, 1e-320, 1e308, -1e308, float("nan"), float("inf"), float("-inf"))
# Sizes just under, at and over the limits of docs/protocol.md §2 and §3 and of the schemas.
LENGTHS = (0, 1, 31, 32, 33, 127, 128, 129, 199, 200, 201, 319, 320, 321, 499, 500, 501, 511, 512, 513, 1023, 1024,
           1025, 31_999, 32_000, 32_001)


@cache
def unicode_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Text mixing ordinary characters, the special ones above and lone surrogates."""
    piece = st.one_of(st.text(max_size=8), st.sampled_from(SPECIAL_CHARS), SURROGATES)
    return st.lists(piece, max_size=max(1, max_size // 4)).map("".join)


def sendable(text: str) -> bool:
    """Whether a str can go out as UTF-8 at all (lone surrogates cannot, even though JSON escapes can)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@st.composite
def long_text(draw: st.DrawFn, lengths: tuple[int, ...] = LENGTHS) -> str:
    """A string of exactly one of the interesting lengths (in code points), made of a repeated drawn unit."""
    length = draw(st.sampled_from(lengths))
    unit = draw(st.sampled_from(("x", "é", "\u202e", "\U0001f600", "ab ", "\ufeff")))
    return (unit * (length // len(unit) + 1))[:length]


@cache
def strings(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=max_size), unicode_text(max_size), long_text(), st.sampled_from(SPECIAL_CHARS))


@cache
def numbers() -> st.SearchStrategy[int | float]:
    return st.one_of(st.integers(), st.sampled_from(EDGE_INTS), st.floats(), st.sampled_from(EDGE_FLOATS))


@dataclass(frozen=True)
class Raw:
    """JSON text spliced in as is where a value goes: what json.dumps cannot write (nesting deeper than
    its own recursion limit, integers of more digits than Python converts, NaN spelt differently)."""

    text: str


# Number-ish tokens: some are JSON, some only Python's json accepts (NaN, Infinity), some neither.
RAW_NUMBERS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "-0", "1.0", "1e2", "0.1e-400", "01", "+1",
               "0x10", ".5", "5.", "9" * 400, "-" + "9" * 400, "9" * 4_301, "9" * 10_000)
DEPTHS = (3, 50, 200, 500, 900, 990, 1_000, 2_000, 5_000)


def nested_json(depth: int) -> Raw:
    """JSON text nested `depth` deep, alternating arrays and objects."""
    opening = "".join("[" if level % 2 else '{"k":' for level in range(depth))
    closing = "".join("]" if level % 2 else "}" for level in reversed(range(depth)))
    return Raw(opening + "1" + closing)


@cache
def raw_tokens(max_depth: int) -> st.SearchStrategy[Raw]:
    depths = [d for d in DEPTHS if d <= max_depth]
    return st.one_of(st.sampled_from(RAW_NUMBERS).map(Raw), st.sampled_from(depths).map(nested_json))


@cache
def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Arbitrary JSON-ish values (NaN and the infinities included: Python's json reads and writes them)."""
    scalars = st.one_of(st.none(), st.booleans(), numbers(), strings(20))
    return st.recursive(scalars, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(strings(10), children, max_size=4)), max_leaves=max_leaves)


@cache
def wrong_values(max_depth: int) -> st.SearchStrategy[Any]:
    """Values of the wrong type for any field: what a buggy or hostile client puts where a string or
    a number belongs. `max_depth` bounds the nesting (see the known bugs in tools/fuzz/known.py)."""
    return st.one_of(json_values(6), raw_tokens(max_depth), st.sampled_from(([], {}, "", [None], {"": None}, True)))


def dumps(value: Any, ascii_only: bool = True) -> str:
    """JSON text of `value` with every Raw spliced in; non-ASCII is escaped when the text could not be
    sent as UTF-8 (lone surrogates)."""
    raws: list[str] = []

    def swap(item: Any) -> Any:
        if isinstance(item, Raw):
            raws.append(item.text)
            return f"@@lexdesk-fuzz-raw-{len(raws) - 1}@@"
        if isinstance(item, dict):
            return {key: swap(child) for key, child in item.items()}
        if isinstance(item, list):
            return [swap(child) for child in item]
        return item

    swapped = swap(value)
    text = json.dumps(swapped, ensure_ascii=ascii_only)
    if not sendable(text):
        text = json.dumps(swapped)
    for index, raw in enumerate(raws):
        text = text.replace(f'"@@lexdesk-fuzz-raw-{index}@@"', raw, 1)
    return text
