"""How households use gas over the year and the day: shared by the demo city's history
(:mod:`connectors.demo.city`) and the live meter fleet (:mod:`connectors.meters.fleet`)."""

from __future__ import annotations

from decimal import Decimal

SEASON = (Decimal("1.55"), Decimal("1.45"), Decimal("1.20"), Decimal("1.00"), Decimal("0.85"), Decimal("0.75"),
          Decimal("0.70"), Decimal("0.70"), Decimal("0.75"), Decimal("0.90"), Decimal("1.10"), Decimal("1.40"))
"""Use in each calendar month relative to the year's average (January first)."""

HOURLY_SHAPE = (1, 1, 0, 0, 0, 1, 6, 12, 9, 3, 2, 5, 6, 3, 2, 2, 3, 8, 14, 12, 7, 4, 2, 1)
"""Share of a day's use in each local hour (midnight first): breakfast, the evening meal and baths
dominate, a little at noon, almost nothing at night."""
