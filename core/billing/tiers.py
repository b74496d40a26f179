"""Splitting one part's volume at the cumulative tier thresholds (rule 2).

Tier *i* (1-based) holds the cumulative volume in ``[threshold_{i−1}, threshold_i)`` with
``threshold_0 = 0`` and the last tier open-ended: the 300th m³ of a 300/600 tariff is still tier 1,
the next 0.001 m³ is tier 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal


def split_at_thresholds(
    cumulative: Decimal, volume: Decimal, thresholds: Sequence[Decimal]
) -> tuple[tuple[int, Decimal], ...]:
    """``(tier, volume)`` for each tier that ``[cumulative, cumulative + volume)`` touches, lowest first.

    The volumes are positive and sum exactly to ``volume``; a zero volume touches no tier.
    """
    low, high = cumulative, cumulative + volume
    lows: list[Decimal] = [Decimal(0), *thresholds]
    highs: list[Decimal | None] = [*thresholds, None]
    parts: list[tuple[int, Decimal]] = []
    for tier, (tier_low, tier_high) in enumerate(zip(lows, highs, strict=True), start=1):
        top = high if tier_high is None else min(high, tier_high)
        share = top - max(low, tier_low)
        if share > 0:
            parts.append((tier, share))
    return tuple(parts)

