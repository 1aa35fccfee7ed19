"""Small statistics helpers: medians, percentiles and spreads of per-round results."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated.

    :raises ValueError: when ``values`` is empty.
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return percentile(values, 50.0)


def relative_spread(values: Sequence[float]) -> float:
    """Half the interquartile range, relative to the median (0.05 means ±5 %)."""
    middle = median(values)
    if middle == 0 or len(values) < 2:
        return 0.0
    return (percentile(values, 75.0) - percentile(values, 25.0)) / 2.0 / abs(middle)
