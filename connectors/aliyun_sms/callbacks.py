"""What Aliyun pushes to us (HTTP batch push, a JSON **array** per POST, answered ``{"code": 0}``):

* ``SmsReport`` — delivery receipts: ``{phone_number, send_time, report_time, success, err_code, err_msg,
  sms_size, biz_id, out_id}`` → ``notification.delivered`` (``out_id`` is our notification id);
* ``SmsUp`` — user replies: ``{phone_number, content, send_time, dest_code, sequence_id, sign_name?}``
  → ``sms.replied``.

Times are ``yyyy-MM-dd HH:mm:ss`` in China time. Aliyun pushes again (after 1, 5 and 10 minutes) on
anything but a 200, so an item is deduplicated by its own key (``biz_id`` with ``out_id``; ``sequence_id``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from core.catalogue.messages import DeliveryStatus, NotificationDelivered, SmsReplied

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
PHONE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")


class BadItem(ValueError):
    """One pushed item we cannot read; the message names the field."""


def _field(item: dict[str, Any], name: str, *, limit: int = 200) -> str:
    value = item.get(name)
    if value is None or isinstance(value, dict | list) or str(value).strip() == "":
        raise BadItem(f"{name} is missing")
    text = str(value).strip()
    if len(text) > limit:
        raise BadItem(f"{name} is longer than {limit}")
    return text


def china_time(value: str, name: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise BadItem(f"{name} {value[:30]!r} is not yyyy-MM-dd HH:mm:ss") from None


def phone_of(item: dict[str, Any]) -> str:
    match = PHONE.match(_field(item, "phone_number", limit=20))
    if match is None:
        raise BadItem("phone_number is not a mainland mobile number")
    return match.group(1)


def receipt(item: dict[str, Any]) -> tuple[str, NotificationDelivered]:
    """``(partner key, notification.delivered data)`` of one SmsReport item."""
    out_id = _field(item, "out_id", limit=64)
    biz_id = _field(item, "biz_id", limit=64)
    success = item.get("success")
    if not isinstance(success, bool):
        raise BadItem("success is not true or false")
    at = china_time(_field(item, "report_time"), "report_time")
    error = None
    if not success:
        error = f"{item.get('err_code') or 'unknown'}: {item.get('err_msg') or ''}".strip()[:500]
    data = NotificationDelivered(notification_id=out_id, provider_ref=biz_id, at=at, error=error,
                                 status=DeliveryStatus.DELIVERED if success else DeliveryStatus.FAILED)
    return f"report:{biz_id}:{out_id}", data


def reply(item: dict[str, Any], in_reply_to: str | None) -> tuple[str, SmsReplied]:
    """``(partner key, sms.replied data)`` of one SmsUp item."""
    sequence = _field(item, "sequence_id", limit=40)
    if not re.fullmatch(r"[0-9A-Za-z_-]+", sequence):
        raise BadItem("sequence_id is not an id")
    content = item.get("content")
    if not isinstance(content, str) or len(content) > 1000:
        raise BadItem("content is missing or longer than 1000")
    data = SmsReplied(reply_id=f"aliyun-{sequence}", phone=phone_of(item), content=content,
                      received_at=china_time(_field(item, "send_time"), "send_time"), in_reply_to=in_reply_to)
    return f"up:{sequence}", data
