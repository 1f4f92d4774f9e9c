"""Small, deterministic language helpers for the Lex emulator: tokens, fuzzy utterance matching,
yes/no detection, phrase spotting and a word-lexicon sentiment analyser. Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOPWORDS: frozenset[str] = _wordset(
    """a an the i im i'm me my mine we us our you your it its is are am was were be been to of for in on at
    by with and or but so do does did can could would will shall should may might please pls just like
    want wanna need this that these those there here what whats what's which who how about some any
    would'd id i'd ill i'll ive i've let lets let's hi hello hey ok okay um uh"""
)
STOPWORD_WEIGHT = 0.15


@dataclass(frozen=True)
class Token:
    """A normalised token and where it sits in the original text."""

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Lower-cased word tokens with character spans into ``text`` (apostrophes kept inside words)."""
    lowered = text.translate(_APOSTROPHES).lower()
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN_RE.finditer(lowered)]


def words(text: str) -> list[str]:
    """Normalised word list of ``text``."""
    return [token.text for token in tokenize(text)]


def normalize(text: str) -> str:
    return " ".join(words(text))


def stem(word: str) -> str:
    """A deliberately crude English stemmer: enough to equate 'balances'/'balance', 'paying'/'pay'."""
    word = word.replace("'", "")
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + replacement
    return word


def weight(word: str) -> float:
    return STOPWORD_WEIGHT if word in STOPWORDS else 1.0


def words_match(a: str, b: str) -> bool:
    """Equal after stemming, or a close typo of a longer word ("balanse" ~ "balance")."""
    if a == b:
        return True
    sa, sb = stem(a), stem(b)
    if sa == sb:
        return True
    if min(len(a), len(b)) >= 5 and a[0] == b[0]:
        return SequenceMatcher(None, a, b).ratio() >= 0.8
    return False


def value_words_match(a: str, b: str) -> bool:
    """Stricter than :func:`words_match`, for slot values: plurals and typos only ("check" is not
    "checking")."""
    if a == b or a.rstrip("s") == b.rstrip("s"):
        return True
    return min(len(a), len(b)) >= 5 and a[0] == b[0] and SequenceMatcher(None, a, b).ratio() >= 0.85


def _weighted_hits(source: list[str], target: list[str]) -> float:
    return sum(weight(w) for w in source if any(words_match(w, t) for t in target))


def similarity(
    user_words: list[str],
    sample_words: list[str],
    *,
    matched_placeholders: int = 0,
    missing_placeholders: int = 0,
) -> float:
    """How well an utterance matches one sample utterance, in [0, 1].

    A weighted F1 of word overlap (stop words count little, typos and plurals still match), with each
    slot placeholder that the user's text filled counting as one matched word on both sides, blended
    with a character-level similarity so word order matters a little.
    """
    user_total = sum(weight(w) for w in user_words) + matched_placeholders
    sample_total = sum(weight(w) for w in sample_words) + matched_placeholders + 0.5 * missing_placeholders
    if user_total == 0 or sample_total == 0:
        return 0.0
    precision = (_weighted_hits(user_words, sample_words) + matched_placeholders) / user_total
    recall = (_weighted_hits(sample_words, user_words) + matched_placeholders) / sample_total
    if precision + recall == 0:
        return 0.0
    f1 = 2 * precision * recall / (precision + recall)
    ratio = SequenceMatcher(None, " ".join(user_words), " ".join(sample_words)).ratio()
    return max(0.0, min(1.0, 0.85 * f1 + 0.15 * ratio))


def find_phrase(text_words: list[str], phrase: str) -> int | None:
    """Index of the first occurrence of ``phrase`` (as whole words) in ``text_words``, else None."""
    target = words(phrase)
    if not target:
        return None
    n = len(target)
    for index in range(len(text_words) - n + 1):
        if text_words[index : index + n] == target:
            return index
    return None


def contains_phrase(text: str, phrases: tuple[str, ...] | list[str]) -> bool:
    text_words = words(text)
    return any(find_phrase(text_words, phrase) is not None for phrase in phrases)


YES_PHRASES: tuple[str, ...] = (
    "yes",
    "yeah",
    "yea",
    "yep",
    "yup",
    "sure",
    "ok",
    "okay",
    "correct",
    "confirm",
    "confirmed",
    "affirmative",
    "absolutely",
    "definitely",
    "of course",
    "please do",
    "go ahead",
    "do it",
    "that's right",
    "thats right",
    "that is right",
    "right",
    "sounds good",
    "y",
)
NO_PHRASES: tuple[str, ...] = (
    "no",
    "nope",
    "nah",
    "cancel",
    "don't",
    "dont",
    "do not",
    "negative",
    "stop",
    "never mind",
    "nevermind",
    "not now",
    "wrong",
    "that's wrong",
    "not right",
    "that's not right",
    "not correct",
    "not really",
    "n",
)


def classify_yes_no(text: str) -> str | None:
    """'yes', 'no' or None: the earliest yes/no phrase in ``text`` decides (longest phrase on ties)."""
    text_words = words(text)
    best: tuple[int, int, str] | None = None
    for answer, phrases in (("yes", YES_PHRASES), ("no", NO_PHRASES)):
        for phrase in phrases:
            index = find_phrase(text_words, phrase)
            if index is None:
                continue
            key = (index, -len(words(phrase)), answer)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


# ----------------------------------------------------------------------------------------------------------
# Sentiment


POSITIVE_WORDS: frozenset[str] = _wordset(
    """thanks thank thx great good awesome excellent amazing love loved lovely happy glad perfect
    wonderful fantastic helpful appreciate appreciated nice pleased brilliant cool super superb best
    kind delighted satisfied fine easy quick fast smooth"""
)
NEGATIVE_WORDS: frozenset[str] = _wordset(
    """terrible awful horrible angry furious mad annoyed annoying useless hate hated bad worst worse
    stupid ridiculous frustrated frustrating disappointed disappointing upset unacceptable broken
    wrong slow rude poor pathetic incompetent garbage rubbish nonsense sucks sucked scam fraud
    problem problems issue issues complaint complain fail failed failing waste wasted idiot dumb
    unhappy sad worried confused"""
)
NEGATORS: frozenset[str] = _wordset(
    "not no never dont don't isnt isn't wasnt wasn't cant can't wont won't didnt didn't doesnt doesn't"
)
INTENSIFIERS: frozenset[str] = _wordset("very really so extremely totally completely absolutely")


def analyze_sentiment(text: str) -> dict[str, object]:
    """A Comprehend-like ``SentimentResponse`` from a tiny lexicon (deterministic).

    Negators flip the polarity of the next two words ("not happy" is negative); intensifiers add weight.
    The label is always the highest of the four scores, which sum to 1.
    """
    text_words = words(text)
    positive = negative = 0.0
    for index, word in enumerate(text_words):
        polarity = 1 if word in POSITIVE_WORDS else -1 if word in NEGATIVE_WORDS else 0
        if polarity == 0:
            continue
        window = text_words[max(0, index - 2) : index]
        if any(w in NEGATORS for w in window):
            polarity = -polarity
        strength = 1.5 if any(w in INTENSIFIERS for w in window) else 1.0
        if polarity > 0:
            positive += strength
        else:
            negative += strength
    if "!" in text and (positive or negative):
        positive, negative = positive * 1.2, negative * 1.2
    if positive == 0 and negative == 0:
        raw = {"positive": 0.03, "negative": 0.02, "neutral": 0.94, "mixed": 0.01}
    else:
        raw = {
            "positive": positive,
            "negative": negative,
            "neutral": 0.3,
            "mixed": 1.2 * min(positive, negative) if positive and negative else 0.02,
        }
    total = sum(raw.values())
    scores = {key: round(value / total, 4) for key, value in raw.items()}
    label = max(("positive", "negative", "mixed", "neutral"), key=lambda key: scores[key])
    return {"sentiment": label.upper(), "sentimentScore": scores}
