"""Meters installed at accounts: the link readings and bills follow (``core_meter.account_id``)."""

from __future__ import annotations

from core.meters.service import METER_ID, MeterView, install_meter

__all__ = ["METER_ID", "MeterView", "install_meter"]
