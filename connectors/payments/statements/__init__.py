"""Daily statement files of the payment channels, read into the core's normalised
:class:`~core.reconciliation.Statement` (the core matches it against its payments).

``PARSERS`` maps a format name (what ``gashub reconcile import --channel`` takes) to its parser, a
function ``(data: bytes, day: date, progress) -> Statement``: ``wechatpay`` (WeChat Pay's trade bill),
``alipay`` (Alipay's trade details, GBK), ``unionpay`` (UnionPay's ZM file). ``simulator`` writes files
in each format. Bank and e-CNY statements have no public standard format (each operating bank has its
own) and have no parser yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from types import MappingProxyType

from connectors.payments.statements import alipay, unionpay, wechatpay
from connectors.payments.statements.common import Progress
from core.reconciliation import Statement

Parser = Callable[[bytes, date, Progress | None], Statement]

PARSERS: Mapping[str, Parser] = MappingProxyType({
    wechatpay.FORMAT: wechatpay.parse,
    alipay.FORMAT: alipay.parse,
    unionpay.FORMAT: unionpay.parse,
})

__all__ = ["PARSERS", "Parser", "Progress"]
