"""NB-IoT meters through China Telecom's CTWing (AEP): pushes in, valve commands out.

Partner: CTWing, the platform NB-IoT meters on China Telecom's network report to. Protocol in: the
platform POSTs JSON to the subscription URL ``{path}`` (``/partners/ctwing/push``):
``{messageType, deviceId, IMEI, IMSI, productId, timestamp (ms), upPacketSN, upDataSN, payload, …}``.

* ``dataReport``: ``payload.APPdata`` is base64 of the meter's CJ/T 188 frame (pass-through products),
  decoded with the device's meter profile; otherwise ``payload`` holds decoded fields, named by
  :class:`~connectors.nbiot.settings.FieldMap`. Either becomes a ``meter.reading`` (source ``ctwing``),
  read at the platform's ``timestamp``.
* ``deviceOnlineOfflineReport`` (``eventType`` 1 online, 0 offline): acknowledged and kept in
  :meth:`CtwingConnector.health`; nothing is published. NB-IoT meters sleep between reports, so an
  offline event is routine, and the catalogue's ``alarm.raised`` kind ``offline`` would page someone
  for every sleep; silence is the stale rule's business, from readings.
* ``commandResponse`` (``taskId``, ``result.resultCode``): answers a pending valve command.

Answers: ``200 {"code": 0}`` once the broker confirmed (or for a duplicate); anything refused gets
``{"code": <status>, "msg": <reason>}``, is audited (``context.reject``) and stores nothing: unknown
devices (403), a ``timestamp`` older than ``max_age_s`` or too far ahead (a replay, 403), garbled
frames and malformed pushes (400), a wrong ``?token=`` (401). Duplicates (the platform sending again
after a slow answer) are dropped by ``deviceId`` + ``upPacketSN`` + ``upDataSN`` + ``timestamp`` (the
inbox; the timestamp keeps a module whose counters restarted after a reboot from being dropped).

Authentication: CTWing does not sign pushes; ``url_token`` puts a secret in the subscription URL.
Out: action ``valve`` sends ``valve.command`` through the AEP command API (:mod:`.aep`, signed with
the App Secret, the product's MasterKey) as a CJ/T 188 valve-control frame whose SER comes from the
command id, so every resend is the same bytes. It then waits, bounded, for the ``commandResponse``
(or the status a poll of the platform reports) and answers ``valve.state``. Settings:
:class:`~connectors.nbiot.settings.CtwingSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web
from pydantic import ValidationError

from connectors.meters.alarms import leak_alarm
from connectors.meters.cjt188 import ValveAction, ValveControl, encode_frame, encode_message, load_meter_profiles
from connectors.meters.cjt188.messages import MeteringData
from connectors.nbiot.aep import AepClient
from connectors.nbiot.settings import CtwingSettings, DeviceBinding
from connectors.nbiot.uplink import (
    Devices,
    Refused,
    decode_meter_message,
    frame_bytes,
    reading_from_fields,
    reading_from_message,
    valve_in_reply,
)
from core.catalogue.messages import MessageType, ReadingSource, ValveCommand, ValveState
from core.catalogue.messages import ValveAction as CanonicalValveAction
from hub.connectors.contract import (
    Capability,
    ConnectorContext,
    Health,
    InboundConnector,
    OutboundConnector,
    Receipt,
)
from hub.connectors.http import read_capped
from hub.envelope import Envelope
from hub.errors import ConnectorTimeout, HubError, PermanentError

log = logging.getLogger(__name__)

REMEMBERED = 10_000
"""Command ids (and early answers) kept in memory: far more than can be in flight."""


def answer(status: int, reason: str = "ok", **extra: Any) -> web.Response:
    return web.Response(body=orjson.dumps({"code": 0 if status == 200 else status, "msg": reason, **extra}),
                        status=status, content_type="application/json")


def command_ser(command_id: str) -> int:
    """The SER of a command's frame: fixed by its id, so a resend is the same frame."""
    return hashlib.sha256(command_id.encode()).digest()[0]


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """What the platform said about a command: its code, and the meter's reply frame if it passed one on."""

    code: str
    app_data: bytes | None = None


class CtwingConnector(InboundConnector[CtwingSettings], OutboundConnector[CtwingSettings]):
    kind = "ctwing"
    settings_model = CtwingSettings
    capabilities = frozenset({Capability.INBOUND, Capability.HTTP_ENDPOINT, Capability.OUTBOUND,
                              Capability.REQUEST_REPLY})
    actions: ClassVar[Mapping[str, str]] = {"valve": MessageType.VALVE_COMMAND.value}
    """``valve`` takes ``valve.command`` and answers ``valve.state`` data once the platform reported the
    command delivered to the meter."""

    def __init__(self, settings: CtwingSettings, context: ConnectorContext, *,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, context)
        self.clock = clock
        self.tz = ZoneInfo(settings.timezone)
        self.devices = Devices(settings.devices, load_meter_profiles(settings.profiles_file))
        self.client: AepClient | None = None
        if settings.app_secret is not None:
            self.client = AepClient(settings.base_url, app_key=settings.app_key,
                                    app_secret=settings.app_secret.get_secret_value(),
                                    master_key=settings.master_key.get_secret_value() if settings.master_key else "",
                                    timeout_s=settings.command.timeout_s, clock=clock)
        self._waiting: dict[str, asyncio.Future[CommandAnswer]] = {}
        self._early: OrderedDict[str, CommandAnswer] = OrderedDict()
        self._sent: OrderedDict[str, str] = OrderedDict()
        self.online: dict[str, tuple[bool, datetime]] = {}
        self.accepted = 0
        context.add_routes([web.post(settings.path, self.push)])

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        if self.client is not None:
            await self.client.aclose()

    def health(self) -> Health:
        online = sorted(m for m, (up, _) in self.online.items() if up)
        return Health(ok=True, extra={"accepted": self.accepted, "online": online,
                                      "commands_waiting": len(self._waiting)})

    # pushes in ------------------------------------------------------------------------------

    async def push(self, request: web.Request) -> web.Response:
        body = await read_capped(request.content, self.settings.max_body_bytes)
        try:
            return await self._push(request, body)
        except Refused as refused:
            await self.context.reject(refused.reason, body=body[:self.settings.max_body_bytes], source="ctwing")
            return answer(refused.status, refused.reason)

    async def _push(self, request: web.Request, body: bytes) -> web.Response:
        if len(body) > self.settings.max_body_bytes:
            raise Refused(413, f"body over {self.settings.max_body_bytes} bytes")
        token = self.settings.url_token
        if token is not None and not hmac.compare_digest(request.query.get("token", "").encode(),
                                                         token.get_secret_value().encode()):
            raise Refused(401, "bad or missing token in the subscription URL")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise Refused(400, "body is not a JSON object")
        kind = doc.get("messageType")
        at = self._timestamp(doc)
        device = self.devices.find(doc.get("deviceId"), doc.get("IMEI"))
        if kind == "dataReport":
            return await self._data_report(doc, device, at)
        if kind == "deviceOnlineOfflineReport":
            return self._online_offline(doc, device, at)
        if kind == "commandResponse":
            return self._command_response(doc, device)
        raise Refused(400, f"messageType {str(kind)[:40]!r} is not handled")

    def _timestamp(self, doc: dict[str, Any]) -> datetime:
        """The push's time; a replay when older than ``max_age_s`` (or too far ahead)."""
        stamp = doc.get("timestamp")
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise Refused(400, "no integer timestamp (ms)")
        age = self.clock() - stamp / 1000
        if age > self.settings.max_age_s:
            raise Refused(403, f"replayed: timestamp {stamp} is {age:.0f} s old "
                               f"(pushes older than {self.settings.max_age_s:.0f} s are refused)")
        if -age > self.settings.max_skew_s:
            raise Refused(403, f"timestamp {stamp} is {-age:.0f} s in the future "
                               f"(more than {self.settings.max_skew_s:.0f} s)")
        return datetime.fromtimestamp(stamp / 1000, UTC)

    async def _data_report(self, doc: dict[str, Any], device: DeviceBinding, at: datetime) -> web.Response:
        payload = doc.get("payload")
        packet, data_sn = doc.get("upPacketSN"), doc.get("upDataSN")
        if not isinstance(payload, dict):
            raise Refused(400, "dataReport without a payload object")
        if not isinstance(packet, int) or isinstance(packet, bool):
            raise Refused(400, "dataReport without an integer upPacketSN")
        profile = self.devices.profile(device)
        if "APPdata" in payload:
            raw = frame_bytes(payload["APPdata"], encoding="base64")
            message = decode_meter_message(device, profile, raw)
            if not isinstance(message, MeteringData):
                reported = valve_in_reply(profile, message)
                log.info("ctwing.uplink_not_a_reading", extra={"meter": device.meter_id,
                                                               "frame": type(message).__name__,
                                                               "valve": reported})
                return answer(200, "not a reading")
            data = reading_from_message(device, profile, message, received_at=at, tz=self.tz,
                                        source=ReadingSource.CTWING)
            status = message.status
        else:
            data = reading_from_fields(device, payload, self.settings.fields, read_at=at, source=ReadingSource.CTWING)
            status = 0
        envelope = Envelope(type=MessageType.METER_READING.value, source=self.context.name,
                            subject=device.meter_id, data=data)
        alarm = leak_alarm(profile, status, meter_id=device.meter_id, detected_at=at, tz=self.tz, reading=envelope,
                           via=f"ctwing:{device.device_id}")
        try:
            if alarm is not None:  # safety first: the alarm before the reading it came with
                await self.context.receive(alarm, partner_key=alarm.data["alarm_id"])
            key = f"{device.device_id}:{packet}:{data_sn}:{doc['timestamp']}"
            result = await self.context.receive(envelope, partner_key=key)
        except HubError as exc:
            log.warning("ctwing.not_accepted", extra={"error": str(exc)})
            return answer(503, "not accepted, send again later")
        self.accepted += 1
        return answer(200, "duplicate" if result.duplicate else "ok", message_id=result.message_id)

    def _online_offline(self, doc: dict[str, Any], device: DeviceBinding, at: datetime) -> web.Response:
        event = doc.get("eventType")
        if event not in (0, 1, "0", "1"):
            raise Refused(400, f"eventType {str(event)[:10]!r} is neither 0 (offline) nor 1 (online)")
        online = str(event) == "1"
        previous = self.online.get(device.meter_id)
        if previous is None or previous[1] <= at:
            self.online[device.meter_id] = (online, at)
        log.info("ctwing.device_online" if online else "ctwing.device_offline", extra={"meter": device.meter_id})
        return answer(200)

    def _command_response(self, doc: dict[str, Any], device: DeviceBinding) -> web.Response:
        task = doc.get("taskId")
        result = doc.get("result")
        if not isinstance(task, str | int) or isinstance(task, bool) or not isinstance(result, dict) \
                or not isinstance(result.get("resultCode"), str):
            raise Refused(400, "commandResponse needs a taskId and result.resultCode")
        detail = result.get("resultDetail")
        app_data = None
        if isinstance(detail, dict) and "APPdata" in detail:
            app_data = frame_bytes(detail["APPdata"], encoding="base64")
        got = CommandAnswer(result["resultCode"].upper(), app_data)
        waiting = self._waiting.get(str(task))
        if waiting is not None and not waiting.done():
            if got.code in self.settings.command.delivered or got.code in self.settings.command.failed:
                waiting.set_result(got)
        else:
            self._remember(self._early, str(task), got)
        log.info("ctwing.command_response", extra={"task": str(task), "code": got.code, "meter": device.meter_id})
        return answer(200)

    # commands out ---------------------------------------------------------------------------

    @staticmethod
    def _remember(book: OrderedDict[str, Any], key: str, value: Any) -> None:
        book[key] = value
        book.move_to_end(key)
        while len(book) > REMEMBERED:
            book.popitem(last=False)

    def command_body(self, command: ValveCommand) -> dict[str, Any]:
        """The create-command body of a valve command: the same for every attempt of that command."""
        device = self.devices.by_meter.get(command.meter_id)
        if device is None:
            raise PermanentError(f"meter {command.meter_id!r} is on no CTWing device of {self.context.name!r}")
        if device.address is None:
            raise PermanentError(f"device {device.device_id} has no meter address to send a valve command to")
        profile = self.devices.profile(device)
        action = ValveAction.OPEN if command.action is CanonicalValveAction.OPEN else ValveAction.CLOSE
        frame = encode_frame(encode_message(ValveControl(profile.meter_type, device.address,
                                                         command_ser(command.command_id), action), profile.dialect),
                             preamble=profile.preamble, address_bytes=profile.address_bytes)
        return {"content": {"dataType": 2, "payload": frame.hex().upper()}, "deviceId": device.device_id,
                "operator": "gashub", "productId": self.settings.product_id, "ttl": self.settings.command.ttl_s,
                "level": 1}

    async def deliver(self, envelope: Envelope, action: str) -> Receipt:
        """Send a ``valve.command`` through the platform and wait, bounded, for the meter's answer.
        A redelivered command already taken by the platform (in this process) is not sent again."""
        if action != "valve":
            raise PermanentError(f"connector {self.context.name!r} has no action {action!r}")
        if self.client is None:
            raise PermanentError(f"connector {self.context.name!r} has no app_secret: it cannot send commands")
        try:
            command = ValveCommand.model_validate(envelope.data)
        except ValidationError as exc:
            raise PermanentError(f"not a valve.command: {exc.errors()[0]['msg']}") from None
        body = self.command_body(command)
        task = self._sent.get(command.command_id)
        if task is None:
            task = await self.client.create_command(body, attempts=self.settings.command.attempts)
            self._remember(self._sent, command.command_id, task)
        log.info("ctwing.command_sent", extra={"task": task, "command_id": command.command_id,
                                               "meter": command.meter_id})
        got = await self._await_answer(task, body["deviceId"])
        if got.code in self.settings.command.failed:
            raise PermanentError(f"CTWing reports command {task} for meter {command.meter_id} {got.code}")
        expected = ValveState.OPEN if command.action is CanonicalValveAction.OPEN else ValveState.CLOSED
        reported = self._reported(command.meter_id, got)
        result = "ok" if reported in (None, expected) else f"meter reports its valve {reported.value}"
        return Receipt(partner_ref=task, reply={
            "meter_id": command.meter_id, "state": (reported or expected).value,
            "observed_at": datetime.now(UTC).isoformat(), "command_id": command.command_id,
            "result": f"{result} ({got.code})"[:64],
        })

    def _reported(self, meter_id: str, got: CommandAnswer) -> ValveState | None:
        if got.app_data is None:
            return None
        device = self.devices.by_meter[meter_id]
        profile = self.devices.profile(device)
        try:
            return valve_in_reply(profile, decode_meter_message(device, profile, got.app_data))
        except Refused as exc:
            log.warning("ctwing.command_reply_unreadable", extra={"meter": meter_id, "error": exc.reason})
            return None

    async def _await_answer(self, task: str, device_id: str) -> CommandAnswer:
        """The push's answer for ``task``, or the status a poll reports; ``ConnectorTimeout`` after
        ``answer_within_s``."""
        early = self._early.pop(task, None)
        if early is not None and self._final(early.code):
            return early
        assert self.client is not None
        settings = self.settings.command
        future = self._waiting.setdefault(task, asyncio.get_running_loop().create_future())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.answer_within_s
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise ConnectorTimeout(f"no answer from the meter to CTWing command {task} within "
                                           f"{settings.answer_within_s:g} s")
                with contextlib.suppress(TimeoutError):  # not wait_for: it can lose a cancellation (3.11)
                    async with asyncio.timeout(min(left, settings.poll_every_s)):
                        return await asyncio.shield(future)
                if loop.time() >= deadline:
                    continue
                status = await self.client.command_status(task, product_id=self.settings.product_id,
                                                          device_id=device_id)
                if status is not None and self._final(status.upper()):
                    return CommandAnswer(status.upper())
        finally:
            if self._waiting.get(task) is future:
                del self._waiting[task]

    def _final(self, code: str) -> bool:
        return code in self.settings.command.delivered or code in self.settings.command.failed
