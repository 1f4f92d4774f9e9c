"""Latency summaries. Nearest-rank percentiles on the raw samples (no interpolation, no histogram
buckets): every reported number is a latency that was really observed, and p50 <= p95 <= p99 <= max
holds by construction, which the bench test relies on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of samples already sorted ascending; `fraction` in (0, 1]."""
    if not sorted_samples:
        raise ValueError("no samples")
    rank = max(1, math.ceil(fraction * len(sorted_samples)))
    return sorted_samples[min(rank, len(sorted_samples)) - 1]


@dataclass(frozen=True)
class Latency:
    """Milliseconds. `count` is how many samples there were; with none, every figure is None."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(0, None, None, None, None, None)
        ordered = sorted(s * 1000.0 for s in seconds)
        return cls(
            count=len(ordered),
            p50_ms=round(percentile(ordered, 0.50), 2),
            p95_ms=round(percentile(ordered, 0.95), 2),
            p99_ms=round(percentile(ordered, 0.99), 2),
            max_ms=round(ordered[-1], 2),
            mean_ms=round(sum(ordered) / len(ordered), 2),
        )
