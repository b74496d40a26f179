"""What every statement parser shares: size-bounded decompression and the progress callback."""

from __future__ import annotations

import zlib
from collections.abc import Callable

from core.reconciliation import StatementError

MAX_BYTES = 512 * 1024 * 1024
"""A daily statement larger than this (after decompression) is refused rather than read."""

Progress = Callable[[int], None]
"""Called now and then with the number of lines read so far."""

EVERY = 5000


def gunzip(data: bytes) -> bytes:
    """WeChat's ``tar_type=GZIP`` download; bounded, so a small bomb cannot fill the memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_BYTES + 1)
    except zlib.error as exc:
        raise StatementError(f"the gzip file is damaged: {exc}") from None
    if len(out) > MAX_BYTES or inflater.unconsumed_tail:
        raise StatementError(f"the statement is larger than {MAX_BYTES // (1024 * 1024)} MiB once unpacked")
    return out


def tick(progress: Progress | None, count: int) -> None:
    if progress is not None and count % EVERY == 0:
        progress(count)
