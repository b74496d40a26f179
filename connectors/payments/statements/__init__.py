"""Daily statement files of the payment channels, read into the core's normalised
:class:`~core.reconciliation.Statement` (the core matches it against its payments).

``PARSERS`` maps a format name (what ``gashub reconcile import --channel`` takes) to its parser, a
function ``(data: bytes, day: date, progress) -> Statement``: ``wechatpay`` (WeChat Pay's trade bill),
``alipay`` (Alipay's trade details, GBK), ``unionpay`` (UnionPay's ZM file), ``ecny`` (the e-CNY bank
adapter's file: e-CNY statements have no public standard, each operating bank has its own, and this is
the format of the project's adapter). ``simulator`` writes files in each format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from types import MappingProxyType

from connectors.payments.statements import alipay, ecny, unionpay, wechatpay
from connectors.payments.statements.common import Progress
from core.reconciliation import Statement

Parser = Callable[[bytes, date, Progress | None], Statement]

PARSERS: Mapping[str, Parser] = MappingProxyType({
    wechatpay.FORMAT: wechatpay.parse,
    alipay.FORMAT: alipay.parse,
    unionpay.FORMAT: unionpay.parse,
    ecny.FORMAT: ecny.parse,
})

__all__ = ["PARSERS", "Parser", "Progress"]
