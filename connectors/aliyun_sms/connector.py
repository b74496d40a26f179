"""Aliyun SMS (阿里云短信服务, Dysmsapi 2017-05-25): notifications out, receipts and replies in.

Partner: Alibaba Cloud's SMS service. Protocol: ``SendSms`` (RPC style, parameters in the query of
``POST /`` on ``endpoint``) with ``PhoneNumbers``, ``SignName``, ``TemplateCode``, ``TemplateParam``
(JSON) and ``OutId`` = the notification id; answer ``{Code, Message, BizId, RequestId}``, ``Code ==
"OK"`` when accepted. Receipts (SmsReport) and replies (SmsUp) arrive as HTTP batch pushes, JSON arrays,
at ``report_path`` and ``upstream_path``. Authentication: our calls are signed with ACS3-HMAC-SHA256
(:mod:`.signing`, AccessKey from ``GASHUB_CONNECTORS__<NAME>__ACCESS_KEY_ID`` / ``…__ACCESS_KEY_SECRET``);
Aliyun does not sign its pushes, so their URLs may carry ``?token=`` (``callback_token``). Settings:
:class:`~.settings.AliyunSmsSettings`.

Sending (action ``send``, takes ``notification.requested``, answers ``notification.delivered`` with
status ``accepted`` and the BizId):

* the template comes from the notification's kind (``templates``: sign name, template code, which
  param fills which template variable); no template, or a param missing → ``PermanentError`` naming it;
* an ordinary message over a number's rate limit or inside quiet hours is held (:class:`~.policy.Held`,
  retried by the route later, not counted by the breaker); ``safety=True`` messages bypass both;
* never twice: a notification id this process sent is answered from memory; a retry (attempt > 1)
  first asks ``QuerySendDetails`` whether Aliyun lists the ``OutId`` for that number (today or
  yesterday), since an attempt that timed out may have gone; each attempt claims
  ``send:<id>:<attempt>`` in the database before calling, so a redelivery of an attempt that may have
  reached Aliyun (a crash after the call) is not sent again;
* ``isv.BUSINESS_LIMIT_CONTROL`` (Aliyun's own per-number limit) holds too; ``Throttling*``, system
  errors, 5xx, timeouts are transient; any other code is a refusal (``PermanentError`` with the code).

Pushes: each item of a receipt array becomes ``notification.delivered`` (``delivered`` or ``failed``
with Aliyun's error code), each reply ``sms.replied`` (with the notification last sent to that number,
when this process knows it), handed to the hub with the item's own key, so Aliyun's resends are
duplicates. Answers: 200 ``{"code": 0}`` once the broker confirmed every readable item; 400 for a
body that is not a JSON array (audited); 401 for a wrong token; 413 over ``max_body_bytes``; 503 when
the broker did not confirm (Aliyun pushes again). Unreadable items are audited and skipped.
"""

from __future__ import annotations

import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson
from aiohttp import web

from connectors.aliyun_sms import callbacks
from connectors.aliyun_sms.client import DysmsClient, SendAnswer
from connectors.aliyun_sms.policy import Held, SendPolicy
from connectors.aliyun_sms.settings import AliyunSmsSettings, SmsTemplate
from core.catalogue.messages import MessageType, NotificationRequested
from hub.connectors.contract import Capability, ConnectorContext, Health, OutboundConnector, Receipt
from hub.envelope import Envelope
from hub.errors import ConnectorTimeout, HubError, PermanentError, TransientError

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def render(template: SmsTemplate, kind: str, params: Mapping[str, str]) -> str:
    """``TemplateParam``: the template's variables filled from the notification's params."""
    if not template.params:
        return orjson.dumps(dict(params)).decode()
    missing = sorted(src for src in template.params.values() if src not in params)
    if missing:
        raise PermanentError(f"notification kind {kind!r}: template {template.template_code} needs param "
                             f"{missing[0]!r}, which the notification does not carry")
    return orjson.dumps({var: params[src] for var, src in template.params.items()}).decode()


async def read_at_most(request: web.Request, n: int) -> bytes:
    """The body's first ``n`` bytes (all of it when shorter); one ``read(n)`` may return fewer."""
    chunks: list[bytes] = []
    size = 0
    while size < n:
        chunk = await request.content.read(n - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class AliyunSmsConnector(OutboundConnector[AliyunSmsSettings]):
    kind = "aliyun_sms"
    settings_model = AliyunSmsSettings
    capabilities = frozenset({Capability.OUTBOUND, Capability.REQUEST_REPLY, Capability.HTTP_ENDPOINT})
    actions: ClassVar = {"send": MessageType.NOTIFICATION_REQUESTED.value}

    def __init__(self, settings: AliyunSmsSettings, context: ConnectorContext, *,
                 clock: Callable[[], datetime] = utc_now) -> None:
        """``clock`` is the local time the rate limits and quiet hours read (signatures use the real time)."""
        super().__init__(settings, context)
        self.clock = clock
        self.client = DysmsClient(settings.endpoint, settings.access_key_id,
                                  settings.access_key_secret.get_secret_value(), timeout_s=settings.timeout_s)
        self.policy = SendPolicy(settings.rate_limits, settings.quiet_hours, settings.timezone,
                                 max_numbers=settings.remember)
        self.sent: OrderedDict[str, str] = OrderedDict()
        """Notification id → BizId, of what this process sent."""
        self.last_to: OrderedDict[str, str] = OrderedDict()
        """Phone → the notification last sent to it (replies are linked to it)."""
        self.counts = {"sent": 0, "held": 0, "repeat": 0, "receipts": 0, "replies": 0}
        context.add_routes([web.post(settings.report_path, self.report),
                            web.post(settings.upstream_path, self.upstream)])

    # sending ------------------------------------------------------------------------------------

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        note = NotificationRequested.model_validate(envelope.data)
        nid = note.notification_id
        template = self.settings.templates.get(note.kind)
        if template is None:
            raise PermanentError(f"no Aliyun SMS template for notification kind {note.kind.value!r}: add "
                                 f"[connectors.{self.context.name}.templates.{note.kind.value}]")
        param = render(template, note.kind.value, note.params)
        if nid in self.sent:
            self.counts["repeat"] += 1
            return self._receipt(nid, self.sent[nid], "sent before by this process")
        now = self.clock()
        if not note.safety:
            try:
                self.policy.check(note.phone, now)
            except Held:
                self.counts["held"] += 1
                raise
        # Counted before the first await, so concurrent deliveries to one number cannot all pass the
        # check; given back when the SMS certainly did not go (not on a timeout: it may have).
        self.policy.record(note.phone, now)
        try:
            answer = await self._send(envelope, note, template, param)
        except ConnectorTimeout:
            raise
        except BaseException:
            self.policy.release(note.phone, now)
            raise
        if answer is None:
            return self._receipt(nid, None, "sent by an earlier delivery; not sent again")
        self._remember(self.sent, nid, answer.biz_id)
        self._remember(self.last_to, note.phone, nid)
        self.counts["sent"] += 1
        return self._receipt(nid, answer.biz_id, f"RequestId {answer.request_id}")

    async def _send(self, envelope: Envelope, note: NotificationRequested, template: SmsTemplate,
                    param: str) -> SendAnswer | None:
        """One SendSms call, or ``None`` when an earlier delivery may have sent it: a retry whose
        notification Aliyun already lists, or this very attempt handed out before (a redelivery)."""
        nid = note.notification_id
        if envelope.attempt > 1 and await self._taken_before(note):
            return None
        if not await self.context.claim_once(f"send:{nid}:{envelope.attempt}"):
            # This very attempt was delivered before and may have reached Aliyun (a crash after the call).
            self.counts["repeat"] += 1
            log.warning("aliyun_sms.not_sent_again", extra={"notification_id": nid, "attempt": envelope.attempt})
            return None
        answer = await self.client.send_sms(phone=note.phone, sign_name=template.sign_name or self.settings.sign_name,
                                            template_code=template.template_code, template_param=param, out_id=nid)
        if answer.limited:
            self.counts["held"] += 1
            raise Held(f"Aliyun flow control {answer.code}", self.clock() + timedelta(minutes=1))
        if answer.transient:
            raise TransientError(f"Aliyun SMS busy ({answer.code}): {answer.message}")
        if not answer.ok:
            raise PermanentError(f"Aliyun SMS refused ({answer.code}): {answer.message}")
        return answer

    async def _taken_before(self, note: NotificationRequested) -> bool:
        """Whether Aliyun took this notification in an earlier attempt (one that timed out, or whose
        process died after the call): ``QuerySendDetails`` for the number, today and yesterday."""
        today = datetime.now(callbacks.CHINA_TZ).date()
        for day in (today, today - timedelta(days=1)):
            if note.notification_id in await self.client.sent_out_ids(note.phone, day):
                self.counts["repeat"] += 1
                log.warning("aliyun_sms.sent_before", extra={"notification_id": note.notification_id})
                return True
        return False

    def _remember(self, table: OrderedDict[str, str], key: str, value: str) -> None:
        table.pop(key, None)
        table[key] = value
        while len(table) > self.settings.remember:
            table.popitem(last=False)

    def _receipt(self, nid: str, biz_id: str | None, detail: str) -> Receipt:
        return Receipt(partner_ref=biz_id, detail=detail, reply={
            "notification_id": nid, "status": "accepted", "provider_ref": biz_id, "at": self.clock().isoformat()})

    # pushes -------------------------------------------------------------------------------------

    async def report(self, request: web.Request) -> web.Response:
        return await self._push(request, "report")

    async def upstream(self, request: web.Request) -> web.Response:
        return await self._push(request, "upstream")

    async def _push(self, request: web.Request, what: str) -> web.Response:
        limit = self.settings.max_body_bytes
        body = await read_at_most(request, limit + 1)
        source = f"aliyun_sms.{what}"
        token = self.settings.callback_token
        if token is not None and not hmac.compare_digest(request.query.get("token", "").encode(),
                                                         token.get_secret_value().encode()):
            await self.context.reject("wrong or missing callback token", body=body[:limit], source=source)
            return web.json_response({"code": 401, "msg": "unauthorised"}, status=401)
        if len(body) > limit:
            await self.context.reject(f"body over {limit} bytes", body=body[:limit], source=source)
            return web.json_response({"code": 413, "msg": "too large"}, status=413)
        try:
            items = orjson.loads(body)
        except orjson.JSONDecodeError:
            items = None
        if not isinstance(items, list):
            await self.context.reject(f"{what}: body is not a JSON array", body=body, source=source)
            return web.json_response({"code": 400, "msg": "expected a JSON array"}, status=400)
        try:
            for n, item in enumerate(items):
                await self._one(what, n, item, body, source)
        except HubError as exc:
            log.warning("aliyun_sms.not_accepted", extra={"error": str(exc), "what": what})
            return web.json_response({"code": 503, "msg": "not accepted yet, push again"}, status=503)
        return web.json_response({"code": 0, "msg": "接收成功"})

    async def _one(self, what: str, n: int, item: Any, body: bytes, source: str) -> None:
        if not isinstance(item, dict):
            await self.context.reject(f"{what} item {n} is not an object", body=body, source=source)
            return
        try:
            if what == "report":
                key, delivered = callbacks.receipt(item)
                envelope = Envelope(type=MessageType.NOTIFICATION_DELIVERED.value, source=self.context.name,
                                    data=delivered.model_dump(mode="json"))
                self.counts["receipts"] += 1
            else:
                phone = callbacks.phone_of(item)
                key, replied = callbacks.reply(item, self.last_to.get(phone))
                envelope = Envelope(type=MessageType.SMS_REPLIED.value, source=self.context.name,
                                    data=replied.model_dump(mode="json"))
                self.counts["replies"] += 1
        except ValueError as exc:  # BadItem, or the canonical model refusing a value
            reason = str(exc).splitlines()[0][:200]
            await self.context.reject(f"{what} item {n}: {reason}", body=orjson.dumps(item), source=source)
            return
        await self.context.receive(envelope, partner_key=key)

    def health(self) -> Health:
        return Health(ok=True, extra=dict(self.counts))

    async def aclose(self) -> None:
        await self.client.aclose()
