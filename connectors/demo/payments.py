"""``PaymentChannelSimulator``: customers paying their gas bills through WeChat Pay and Alipay.

Who pays what: most customers pay their bill exactly, some round up (the rest is kept as credit), a
few pay part of it; now and then a platform notifies the same payment twice (it retries when an
answer is slow, or tells that the trade is finished), and the core must credit it once. WeChat payments
go over the wire when a ``wechat`` sender is given (:mod:`connectors.demo.wechat`: a Native order, the
platform's signed and encrypted notification to the hub's WeChat Pay connector); a channel named in
``deliver`` goes through its platform's simulator (the demo's Alipay payments:
:class:`~connectors.payments.alipay.simulator.AlipayGatewaySimulator` POSTs the signed notification to
the hub's ``alipay`` connector); other payments are published as the canonical ``payment.received`` a
payment connector would publish.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from hub.envelope import Envelope

CENT = Decimal("0.01")
Publish = Callable[[Sequence[Envelope]], Awaitable[None]]
Deliver = Callable[["Payment", bool], Awaitable[None]]
"""Hand a payment to a platform simulator, which notifies the hub; ``True`` for the second notification."""


@dataclass(frozen=True, slots=True)
class Due:
    """A bill a customer may pay."""

    bill_id: str
    account_id: str
    account_number: str
    total: Decimal


@dataclass(frozen=True, slots=True)
class Payment:
    """One payment as the platform reports it."""

    channel: str
    transaction_id: str
    out_trade_no: str
    account_id: str
    account_number: str
    amount: Decimal
    paid_at: datetime
    payer_ref: str
    bill_total: Decimal
    bill_id: str = ""

    def data(self) -> dict[str, Any]:
        return {"channel": self.channel, "transaction_id": self.transaction_id, "out_trade_no": self.out_trade_no,
                "account_id": self.account_id, "amount": str(self.amount), "currency": "CNY",
                "paid_at": self.paid_at.isoformat(), "payer_ref": self.payer_ref}

    @property
    def how(self) -> str:
        if self.amount == self.bill_total:
            return "the bill"
        return "more than the bill" if self.amount > self.bill_total else "part of the bill"


PayOverWire = Callable[[Payment, bool], Awaitable[Payment]]
"""Pay ``payment`` through the platform (notifying twice when asked); the payment as the platform has it."""


@dataclass(frozen=True, slots=True)
class Notified:
    payment: Payment
    envelope: Envelope | None
    """The first notification's message (``None`` when a platform's connector made it)."""
    twice: bool


@dataclass
class PaymentChannelSimulator:
    publish: Publish
    seed: int = 23
    pay_share: float = 0.7
    """The share of bills paid during the demo."""
    repeat_rate: float = 0.1
    """The share of payments notified twice."""
    wechat: PayOverWire | None = None
    sent: list[Payment] = field(default_factory=list)
    repeated: list[Payment] = field(default_factory=list)
    messages: int = 0
    deliver: dict[str, Deliver] = field(default_factory=dict)
    """Channels whose notifications a platform simulator sends, signed, to the hub's connector."""
    _seq: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def plan(self, dues: Sequence[Due], now: datetime) -> list[Payment]:
        """Who pays what: ``pay_share`` of the bills, in a random order."""
        chosen = self._rng.sample(list(dues), round(len(dues) * self.pay_share))
        return [self._payment(due, now) for due in chosen]

    def _payment(self, due: Due, now: datetime) -> Payment:
        rng = self._rng
        roll = rng.random()
        if roll < 0.75:
            amount = due.total
        elif roll < 0.9:  # rounded up to the next 10 yuan: the rest stays as credit
            amount = (due.total / 10).to_integral_value(ROUND_CEILING) * 10
            amount = (amount if amount > due.total else amount + 10).quantize(CENT)
        else:
            amount = max(CENT, (due.total / 2).quantize(CENT))
        self._seq += 1
        day = f"{now:%Y%m%d}"
        if rng.random() < 0.6:
            channel = "wechat"
            transaction_id = f"4200{rng.randrange(10**6):06d}{day}{rng.randrange(10**10):010d}"
            payer = "oUpF8u" + "".join(rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(22))
        else:
            channel = "alipay"
            transaction_id = f"{day}22001{rng.randrange(10**15):015d}"
            payer = f"2088{rng.randrange(10**12):012d}"
        return Payment(channel=channel, transaction_id=transaction_id, out_trade_no=f"GAS{day}{self._seq:08d}",
                       account_id=due.account_id, account_number=due.account_number, amount=amount, paid_at=now,
                       payer_ref=payer, bill_total=due.total, bill_id=due.bill_id)

    async def notify(self, payment: Payment) -> Notified:
        """Publish the payment's ``payment.received`` (paid just now); the same notification again, now
        and then."""
        payment = replace(payment, paid_at=datetime.now(UTC).astimezone(payment.paid_at.tzinfo))
        twice = self._rng.random() < self.repeat_rate
        first: Envelope | None = None
        deliver = self.deliver.get(payment.channel)
        if payment.channel == "wechat" and self.wechat is not None:
            payment = await self.wechat(payment, twice)
        elif deliver is not None:
            await deliver(payment, False)
            if twice:
                await deliver(payment, True)
        else:
            first = self._envelope(payment)
            await self.publish([first])
            if twice:
                await self.publish([self._envelope(payment)])
        self.sent.append(payment)
        self.messages += 2 if twice else 1
        if twice:
            self.repeated.append(payment)
        return Notified(payment, first, twice)

    @staticmethod
    def _envelope(payment: Payment) -> Envelope:
        return Envelope(type="payment.received", source=f"demo.{payment.channel}", subject=payment.account_id,
                        data=payment.data())

    async def run(self, payments: Sequence[Payment], *, per_second: float, stop: asyncio.Event,
                  on_sent: Callable[[Notified], None] | None = None) -> None:
        """Notify ``payments`` at ``per_second`` until done or ``stop`` is set."""
        for payment in payments:
            if stop.is_set():
                return
            notified = await self.notify(payment)
            if on_sent is not None:
                on_sent(notified)
            await asyncio.sleep(1.0 / per_second)
