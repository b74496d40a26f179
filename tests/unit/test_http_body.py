"""Inbound bodies are read whole, however the partner's TCP stack cuts them (real sockets)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.connectors.http import read_capped

LIMIT = 1000


async def _serve() -> tuple[web.AppRunner, int]:
    async def endpoint(request: web.Request) -> web.Response:
        body = await read_capped(request.content, LIMIT)
        return web.Response(text=f"{len(body)}:{body[:1].decode()}{body[-1:].decode()}")

    app = web.Application()
    app.router.add_post("/push", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def _post_in_pieces(port: int, body: bytes, pieces: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST /push HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    step = max(1, len(body) // pieces)
    for start in range(0, len(body), step):
        writer.write(body[start:start + step])
        await writer.drain()
        await asyncio.sleep(0.05)
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n\r\n", 1)[1].decode()


async def test_a_body_sent_in_several_segments_is_read_whole() -> None:
    runner, port = await _serve()
    try:
        body = b"a" + b"x" * 700 + b"z"
        assert await _post_in_pieces(port, body, 3) == f"{len(body)}:az"
    finally:
        await runner.cleanup()


async def test_an_oversized_body_stops_one_byte_past_the_limit() -> None:
    runner, port = await _serve()
    try:
        body = b"a" * 5000
        assert await _post_in_pieces(port, body, 4) == f"{LIMIT + 1}:aa"
    finally:
        await runner.cleanup()
