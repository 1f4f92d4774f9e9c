"""Slot value recognition for the Lex emulator: AMAZON.Number, AMAZON.AlphaNumeric, AMAZON.Date and
custom slot types (values + synonyms). Pure functions, no I/O; "today" is always passed in."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from emulators.lex import nlu
from emulators.lex.botdef import SlotType


@dataclass(frozen=True)
class ExtractedValue:
    """A slot value found in a text, as Lex reports it, plus where it was found."""

    original: str
    interpreted: str
    resolved: tuple[str, ...]
    start: int
    end: int
    weak: bool = False
    """True when the value is only a guess (a lone word taken as an AlphaNumeric/OriginalValue answer)."""


def extract_value(
    slot_type: str,
    text: str,
    *,
    slot_types: Mapping[str, SlotType],
    today: date,
    whole_utterance: bool,
) -> ExtractedValue | None:
    """Find a value of ``slot_type`` in ``text``.

    ``whole_utterance`` is true when the text answers an elicitation of this very slot, which allows
    looser matches (a lone word as an AlphaNumeric value); when spotting a value inside a longer
    utterance (a ``{Slot}`` in a sample utterance) only clear-cut values are taken.
    """
    if slot_type == "AMAZON.Number":
        return extract_number(text)
    if slot_type == "AMAZON.AlphaNumeric":
        return extract_alphanumeric(text, whole_utterance=whole_utterance)
    if slot_type == "AMAZON.Date":
        return extract_date(text, today)
    custom = slot_types.get(slot_type)
    if custom is None:
        return None
    return extract_custom(custom, text, whole_utterance=whole_utterance)


# ----------------------------------------------------------------------------------------------------------
# AMAZON.Number

_NUMBER_RE = re.compile(
    r"(?<![\w.$/-])(?P<neg>-)?\$?\s?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?(?![\w/]|\.\d)"
)
_WORD_RE = re.compile(r"[A-Za-z]+")
_UNIT_WORDS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
_UNIT_WORDS += "sixteen seventeen eighteen nineteen"
_TEN_WORDS = "twenty thirty forty fifty sixty seventy eighty ninety"
_UNITS: dict[str, int] = {word: value for value, word in enumerate(_UNIT_WORDS.split())}
_UNITS["oh"] = 0
_TENS: dict[str, int] = {word: 10 * (index + 2) for index, word in enumerate(_TEN_WORDS.split())}
_SCALES: dict[str, int] = {"thousand": 1000, "million": 1_000_000}


def format_number(value: float) -> str:
    """Lex-style number text: integers without decimals, others without trailing zeros."""
    if value == int(value):
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _words_to_number(items: list[str]) -> int | None:
    items = [w for w in items if w != "and"]
    if not items:
        return None
    if len(items) > 1 and all(w in _UNITS and _UNITS[w] < 10 for w in items):
        return int("".join(str(_UNITS[w]) for w in items))  # "one two three" spoken digit by digit
    total = current = 0
    for word in items:
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        elif word in _SCALES:
            total += (current or 1) * _SCALES[word]
            current = 0
    return total + current


def _number_word_runs(text: str) -> list[tuple[int, int, list[str]]]:
    runs: list[tuple[int, int, list[str]]] = []
    current: list[re.Match[str]] = []

    def flush() -> None:
        while current and current[-1].group(0).lower() == "and":
            current.pop()
        if current:
            runs.append((current[0].start(), current[-1].end(), [m.group(0).lower() for m in current]))
        current.clear()

    for match in _WORD_RE.finditer(text):
        word = match.group(0).lower()
        is_number_word = word in _UNITS or word in _TENS or word == "hundred" or word in _SCALES
        joinable = bool(current) and text[current[-1].end() : match.start()].strip(" -") == ""
        if is_number_word or (word == "and" and current):
            if current and not joinable:
                flush()
            current.append(match)
        else:
            flush()
    flush()
    return runs


def extract_number(text: str) -> ExtractedValue | None:
    match = _NUMBER_RE.search(text)
    if match is not None:
        digits = match.group("int").replace(",", "")
        frac = match.group("frac")
        value = float(f"{digits}.{frac}") if frac else float(digits)
        if match.group("neg"):
            value = -value
        interpreted = format_number(value)
        original = text[match.start() : match.end()].strip()
        start = match.start() + (len(text[match.start() : match.end()]) - len(original))
        return ExtractedValue(original, interpreted, (interpreted,), start, match.end())
    for start, end, items in _number_word_runs(text):
        number = _words_to_number(items)
        if number is not None:
            interpreted = str(number)
            return ExtractedValue(text[start:end], interpreted, (interpreted,), start, end)
    return None


# ----------------------------------------------------------------------------------------------------------
# AMAZON.AlphaNumeric

_ALNUM_RUN_RE = re.compile(r"[A-Za-z0-9]*\d[A-Za-z0-9]*(?:[ \t-]+[A-Za-z0-9]*\d[A-Za-z0-9]*)*")
_SINGLE_WORD_RE = re.compile(r"^\W*([A-Za-z0-9]+)\W*$")
_MONEY_RE = re.compile(
    r"\$\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?\s*(?:dollars?|bucks|usd|cents?)\b", re.IGNORECASE
)


def _money_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` names an amount of money ("$100", "1,234.50 dollars"): no identifier is there."""
    return [(m.start(), m.end()) for m in _MONEY_RE.finditer(text)]


def extract_alphanumeric(text: str, *, whole_utterance: bool) -> ExtractedValue | None:
    """An identifier (account id, card number): the longest run of digit-bearing words, with spaces and
    dashes between groups dropped ("1234 5678-1234 5678" → "1234567812345678"). An amount of money is
    never one: "$100" answers "how much", not "which card"."""
    money = _money_spans(text)
    runs = [
        m for m in _ALNUM_RUN_RE.finditer(text) if not any(m.start() < end and start < m.end() for start, end in money)
    ]
    if runs:
        best = max(runs, key=lambda m: (len(re.sub(r"[\s-]", "", m.group(0))), -m.start()))
        original = best.group(0)
        interpreted = re.sub(r"[\s-]", "", original)
        return ExtractedValue(original, interpreted, (interpreted,), best.start(), best.end())
    if whole_utterance and not money:
        single = _SINGLE_WORD_RE.match(text)
        if single is not None:
            word = single.group(1)
            return ExtractedValue(word, word, (word,), single.start(1), single.end(1), weak=True)
    return None


# ----------------------------------------------------------------------------------------------------------
# AMAZON.Date

_MONTHS: dict[str, int] = {}
for _number, _name in enumerate(calendar.month_name):
    if _name:
        _MONTHS[_name.lower()] = _number
        _MONTHS[_name[:3].lower()] = _number
_MONTHS["sept"] = 9
_MONTH_RE = "(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_ORDINAL = r"(?:st|nd|rd|th)?"

_DATE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ymd", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")),
    ("mdy", re.compile(r"\b(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4}|\d{2})\b")),
    ("ym", re.compile(r"\b(?P<y>\d{4})-(?P<m>\d{1,2})\b")),
    ("my", re.compile(r"\b(?P<m>\d{1,2})\s*[/-]\s*(?P<y>\d{4}|\d{2})\b")),
    ("name_y", re.compile(rf"\b{_MONTH_RE}\s*,?\s+(?P<y>\d{{4}})\b", re.IGNORECASE)),
    (
        "name_d_y",
        re.compile(rf"\b{_MONTH_RE}\s+(?P<d>\d{{1,2}}){_ORDINAL}(?:\s*,?\s+(?P<y>\d{{4}}))?\b", re.IGNORECASE),
    ),
    (
        "d_name_y",
        re.compile(
            rf"\b(?:the\s+)?(?P<d>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?{_MONTH_RE}(?:\s*,?\s+(?P<y>\d{{4}}))?\b",
            re.IGNORECASE,
        ),
    ),
    ("relative", re.compile(r"\b(?P<rel>day after tomorrow|today|tomorrow|yesterday|tonight)\b", re.I)),
    ("relative_period", re.compile(r"\b(?P<which>this|next|last)\s+(?P<unit>week|month|year)\b", re.I)),
)


def _year(raw: str) -> int:
    return 2000 + int(raw) if len(raw) == 2 else int(raw)


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def _resolve_date(kind: str, match: re.Match[str], today: date) -> date | None:
    groups = match.groupdict()
    month = _MONTHS[groups["month_name"].lower()] if groups.get("month_name") else None
    if groups.get("m"):
        month = int(groups["m"])
    if kind in {"ymd", "mdy"}:
        assert month is not None
        return date(_year(groups["y"]), month, int(groups["d"]))
    if kind in {"ym", "my", "name_y"}:
        assert month is not None
        return _month_end(_year(groups["y"]), month)
    if kind in {"name_d_y", "d_name_y"}:
        assert month is not None
        day = int(groups["d"])
        if groups.get("y"):
            return date(int(groups["y"]), month, day)
        candidate = date(today.year, month, day)
        return candidate if candidate >= today else date(today.year + 1, month, day)
    if kind == "relative":
        rel = groups["rel"].lower()
        offset = {"today": 0, "tonight": 0, "tomorrow": 1, "yesterday": -1, "day after tomorrow": 2}[rel]
        return today + timedelta(days=offset)
    if kind == "relative_period":
        delta = {"this": 0, "next": 1, "last": -1}[groups["which"].lower()]
        unit = groups["unit"].lower()
        if unit == "week":
            return today + timedelta(weeks=delta)
        if unit == "month":
            return _month_end(*_add_months(today.year, today.month, delta))
        return date(today.year + delta, 12, 31)
    return None


def extract_date(text: str, today: date) -> ExtractedValue | None:
    """Dates as Lex resolves them (``YYYY-MM-DD``).

    Month-only expressions ("05/27", "12/2028", "May 2027", "next month") resolve to the last day of
    that month, which is what a card expiry date means; "05/27" is read as month/year, not month/day.
    """
    best: tuple[tuple[int, int, int], ExtractedValue] | None = None
    for priority, (kind, pattern) in enumerate(_DATE_PATTERNS):
        for match in pattern.finditer(text):
            try:
                resolved = _resolve_date(kind, match, today)
            except ValueError:  # e.g. month 13 or February 30
                continue
            if resolved is None:
                continue
            # The longest expression wins ("3 January 2026" over "January 2026"), then the earliest.
            key = (match.start() - match.end(), match.start(), priority)
            if best is None or key < best[0]:
                iso = resolved.isoformat()
                best = (key, ExtractedValue(match.group(0), iso, (iso,), match.start(), match.end()))
    return None if best is None else best[1]


# ----------------------------------------------------------------------------------------------------------
# Custom slot types


def extract_custom(slot_type: SlotType, text: str, *, whole_utterance: bool) -> ExtractedValue | None:
    tokens = nlu.tokenize(text)
    best: tuple[int, int, int, str] | None = None  # (-n words, start index, end index, canonical value)
    for entry in slot_type.values:
        for phrase in (entry.value, *entry.synonyms):
            target = nlu.words(phrase)
            n = len(target)
            if n == 0:
                continue
            for index in range(len(tokens) - n + 1):
                window = tokens[index : index + n]
                if all(nlu.value_words_match(tok.text, want) for tok, want in zip(window, target, strict=True)):
                    key = (-n, index, index + n, entry.value)
                    if best is None or key[:2] < best[:2]:
                        best = key
                    break
    if best is not None:
        _, first, last, canonical = best
        start, end = tokens[first].start, tokens[last - 1].end
        original = text[start:end]
        interpreted = canonical if slot_type.resolution == "TopResolution" else original
        return ExtractedValue(original, interpreted, (canonical,), start, end)
    if whole_utterance and slot_type.resolution == "OriginalValue" and text.strip():
        stripped = text.strip()
        start = text.index(stripped)
        return ExtractedValue(stripped, stripped, (), start, start + len(stripped), weak=True)
    return None
