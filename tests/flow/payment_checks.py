"""What the payment platforms' flow tests look at: a fresh account to pay, and what the database
holds afterwards (payments credited, credit kept, messages stored, refusals audited)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from core.accounts import CustomerIn, PremisesIn, id_check_digit, open_account
from core.db.tables_payments import credit, payment
from hub.store.tables import hop, message

CENT = Decimal("0.01")


async def postpaid_account(hub: Any, prefix: str, *, name: str = "王芳", phone: str = "13812345678",
                           address: str = "绍兴市越城区中兴中路2号") -> str:
    """A postpaid account with no bill (what it is paid is kept as credit): holder ``name`` at ``phone``,
    premises at ``address`` in yuecheng."""
    assert hub.privacy is not None
    async with hub.db.begin() as conn:
        view = await open_account(
            conn, hub.privacy, f"{prefix}-{time.monotonic_ns()}",
            CustomerIn(name=name, phone=phone, id_number="33062119850615004" + id_check_digit("33062119850615004")),
            PremisesIn(address=address, district="yuecheng", lat=30.0, lon=120.58),
            "residential", "postpaid")
    return view.account_id


async def credited(hub: Any) -> list[tuple[str, str, Decimal]]:
    """Every payment the core recorded: (channel, transaction id, amount)."""
    async with hub.db.read() as conn:
        return [(r.channel, r.transaction_id, Decimal(r.amount).quantize(CENT))
                for r in await conn.execute(select(payment.c.channel, payment.c.transaction_id, payment.c.amount))]


async def transactions_credited(hub: Any) -> list[tuple[str, Decimal]]:
    """Every payment the core recorded: (transaction id, amount)."""
    return [(transaction_id, amount) for _, transaction_id, amount in await credited(hub)]


async def credited_count_is(hub: Any, n: int) -> bool:
    return len(await credited(hub)) == n


async def kept(hub: Any, account_id: str) -> Decimal:
    """The credit an account holds."""
    async with hub.db.read() as conn:
        total = await conn.scalar(select(func.sum(credit.c.amount)).where(credit.c.account_id == account_id))
    return Decimal(total or 0).quantize(CENT)


async def payments_stored(hub: Any) -> list[bytes]:
    """The stored bodies of ``payment.received`` messages (one per payment, however often it came)."""
    async with hub.db.read() as conn:
        rows = await conn.execute(select(message.c.body).where(message.c.type == "payment.received"))
        return [bytes(r.body) for r in rows]


async def rejections(hub: Any) -> list[tuple[str, str]]:
    """The audited refusals: (route, error)."""
    async with hub.db.read() as conn:
        rows = await conn.execute(select(hop.c.route, hop.c.error).where(hop.c.outcome == "rejected"))
        return [(r.route, r.error) for r in rows]


async def post_in_two_pieces(base_url: str, path: str, body: bytes, content_type: str) -> bytes:
    """POST over a raw socket: the headers and half the body, a pause, the rest; the raw answer."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        writer.write(head + body[:len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(body[len(body) // 2:])
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
