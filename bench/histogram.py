"""Mergeable log-bucket latency histogram (2 % resolution) for p50/p99 without keeping samples.

Workers record into their own histogram and send it to the parent, which merges them; a run
of 100k requests costs a few kilobytes instead of a list of floats.
"""

from __future__ import annotations

import math

_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
_MIN_S = 1e-6  # bucket 0 holds everything at or below 1 µs
_BUCKETS = int(math.log(1000.0 / _MIN_S) / _LOG_GROWTH) + 2  # up to ~1000 s


class Histogram:
    """Counts of latencies (seconds) in geometric buckets."""

    __slots__ = ("count", "counts", "max", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if seconds <= _MIN_S:
            index = 0
        else:
            index = min(int(math.log(seconds / _MIN_S) / _LOG_GROWTH) + 1, _BUCKETS - 1)
        self.counts[index] += 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        counts = self.counts
        for i, n in enumerate(other.counts):
            if n:
                counts[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, fraction: float) -> float:
        """Upper edge of the bucket holding the given fraction of samples (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for i, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                return min(_MIN_S * _GROWTH**i, self.max)
        return self.max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0
