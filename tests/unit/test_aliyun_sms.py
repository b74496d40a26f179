"""The Aliyun SMS connector against its simulator and against Aliyun's own SDK.

The SDK (``alibabacloud_dysmsapi20170525`` on ``alibabacloud_tea_openapi``) is the second
implementation of ACS3-HMAC-SHA256: its requests must pass our verifier (the simulator's), and for the
same request, date and nonce its signature must equal ours.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from alibabacloud_dysmsapi20170525 import models as sms_models
from alibabacloud_dysmsapi20170525.client import Client as SdkClient
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from darabonba.request import DaraRequest
from darabonba.runtime import RuntimeOptions

from connectors.aliyun_sms import signing
from connectors.aliyun_sms.connector import AliyunSmsConnector
from connectors.aliyun_sms.policy import Held
from connectors.aliyun_sms.settings import AliyunSmsSettings
from connectors.aliyun_sms.simulator import SIM_KEY_ID, SIM_KEY_SECRET, AliyunSmsSimulator
from hub.connectors.contract import ReceiveResult
from hub.envelope import Envelope
from hub.errors import ConnectorTimeout, PermanentError, TransientError

PHONE = "13812345678"
# 2026-03-02 10:00 in Shanghai: outside the default quiet hours.
DAY = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class OnceContext:
    """An outbound connector's context whose ``claim_once`` is one shared set, like the hub's inbox."""

    name = "sms"

    def __init__(self, claimed: set[str] | None = None) -> None:
        self.claimed = set() if claimed is None else claimed
        self.routes: list[web.RouteDef] = []
        self.received: list[Envelope] = []

    async def receive(self, envelope: Envelope, *, partner_key: str | None = None) -> ReceiveResult:
        self.received.append(envelope)
        return ReceiveResult(envelope.id, duplicate=False)

    async def reject(self, reason: str, *, body: bytes, source: str) -> None:
        raise AssertionError(reason)

    async def claim_once(self, key: str) -> bool:
        if key in self.claimed:
            return False
        self.claimed.add(key)
        return True

    def add_routes(self, routes: Sequence[web.RouteDef]) -> None:
        self.routes.extend(routes)


@pytest.fixture
async def sim() -> AsyncIterator[AliyunSmsSimulator]:
    s = AliyunSmsSimulator(templates={"SMS_BILL_1": ["account", "amount"], "SMS_ALARM": [], "SMS_OUTAGE": []})
    await s.start()
    yield s
    await s.aclose()


def settings(sim: AliyunSmsSimulator, **extra: Any) -> AliyunSmsSettings:
    values: dict[str, Any] = {
        "endpoint": sim.url, "access_key_id": SIM_KEY_ID, "access_key_secret": SIM_KEY_SECRET,
        "templates": {"bill": {"template_code": "SMS_BILL_1", "params": {"account": "account_number",
                                                                          "amount": "amount"}},
                      "alarm": {"template_code": "SMS_ALARM", "sign_name": "绍兴燃气安全"},
                      "outage": {"template_code": "SMS_OUTAGE"}},
    }
    values.update(extra)
    return AliyunSmsSettings.model_validate(values)


def note(nid: str = "bill-B1", kind: str = "bill", *, safety: bool = False, phone: str = PHONE,
         attempt: int = 1, params: dict[str, str] | None = None) -> Envelope:
    data = {"notification_id": nid, "kind": kind, "phone": phone, "safety": safety,
            "params": {"account_number": "0001234567", "amount": "168.00", "bill_id": "B1"} if params is None
            else params}
    return Envelope(type="notification.requested", source="core", data=data, attempt=attempt)


def connector(sim: AliyunSmsSimulator, clock: Clock, ctx: OnceContext | None = None,
              **extra: Any) -> AliyunSmsConnector:
    return AliyunSmsConnector(settings(sim, **extra), ctx or OnceContext(), clock=clock)


# --- the signature, against the SDK ---------------------------------------------------------------


def sdk(url: str, secret: str = SIM_KEY_SECRET) -> SdkClient:
    config = open_api_models.Config(access_key_id=SIM_KEY_ID, access_key_secret=secret,
                                    endpoint=url.removeprefix("http://"), protocol="HTTP")
    return SdkClient(config)


def sdk_request(out_id: str = "bill-B1") -> sms_models.SendSmsRequest:
    # A value with a space, a plus, a tilde and CJK: the encodings ACS3 is particular about.
    return sms_models.SendSmsRequest(phone_numbers=PHONE, sign_name="绍兴燃气", template_code="SMS_BILL_1",
                                     template_param='{"account":"0001 234+567~","amount":"168.00"}',
                                     out_id=out_id)


async def test_the_sdks_send_sms_passes_our_verifier(sim: AliyunSmsSimulator) -> None:
    answer = await sdk(sim.url).send_sms_with_options_async(sdk_request(), RuntimeOptions())
    assert answer.body.code == "OK"
    assert answer.body.biz_id == sim.sent[0].biz_id
    sent = sim.sent[0]
    assert (sent.phone, sent.sign_name, sent.out_id) == (PHONE, "绍兴燃气", "bill-B1")
    assert sent.params == {"account": "0001 234+567~", "amount": "168.00"}


async def test_the_sdk_signing_with_a_wrong_secret_is_refused(sim: AliyunSmsSimulator) -> None:
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        await sdk(sim.url, secret="not-the-secret").send_sms_with_options_async(sdk_request(), RuntimeOptions())
    assert sim.sent == []
    assert sim.refused == ["SignatureDoesNotMatch"]


def test_our_signature_equals_the_sdks_for_the_same_request_date_and_nonce() -> None:
    query = {"PhoneNumbers": PHONE, "SignName": "绍兴燃气", "TemplateCode": "SMS_BILL_1", "OutId": "bill-B1",
             "TemplateParam": '{"account":"0001 234+567~*","amount":"168.00"}'}
    ours = signing.sign("POST", "dysmsapi.aliyuncs.com", "/", query, action="SendSms", version="2017-05-25",
                        access_key_id=SIM_KEY_ID, access_key_secret=SIM_KEY_SECRET,
                        now=DAY.timestamp(), nonce="3f1d7c0e9b2a4c6d8e0f1a2b3c4d5e6f")
    assert ours["x-acs-date"] == "2026-03-02T02:00:00Z"
    request = DaraRequest()
    request.method = "POST"
    request.pathname = "/"
    request.query = dict(query)
    request.headers = {k: v for k, v in ours.items() if k != "Authorization"}
    theirs = SdkUtils.get_authorization(request, "ACS3-HMAC-SHA256", hashlib.sha256(b"").hexdigest(),
                                        SIM_KEY_ID, SIM_KEY_SECRET)
    assert ours["Authorization"] == theirs


async def test_the_sdks_signature_is_recomputed_by_our_canonicalisation() -> None:
    """Capture what the SDK sends (its own date, nonce and signed headers) and sign it again with ours."""
    captured: list[web.Request] = []
    bodies: list[bytes] = []

    async def capture(request: web.Request) -> web.Response:
        captured.append(request)
        bodies.append(await request.read())
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": "1^1", "RequestId": "R"})

    app = web.Application()
    app.router.add_post("/", capture)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        await sdk(f"http://127.0.0.1:{port}").send_sms_with_options_async(sdk_request(), RuntimeOptions())
    finally:
        await runner.cleanup()
    req = captured[0]
    key_id, signed_headers, their_signature = signing.parse_authorization(req.headers["Authorization"])
    assert key_id == SIM_KEY_ID
    assert {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-content-sha256"} <= set(signed_headers)
    canonical = signing.canonical_request(req.method, req.path, dict(req.query), dict(req.headers),
                                          signed_headers, hashlib.sha256(bodies[0]).hexdigest())
    assert signing.signature(SIM_KEY_SECRET, canonical) == their_signature


async def test_our_calls_pass_the_simulator_and_a_replayed_nonce_or_tampered_query_does_not(
        sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(datetime.now(UTC)), quiet_hours=None)
    url, headers = c.client.signed({"PhoneNumbers": PHONE, "SignName": "绍兴燃气", "TemplateCode": "SMS_ALARM",
                                    "TemplateParam": "{}", "OutId": "n-1"})
    async with aiohttp.ClientSession() as session:
        async with session.post(url, headers=headers) as resp:
            assert (await resp.json())["Code"] == "OK"
        async with session.post(url, headers=headers) as resp:
            assert (await resp.json())["Code"] == "SignatureNonceUsed"
        url2, headers2 = c.client.signed({"PhoneNumbers": PHONE, "SignName": "x", "TemplateCode": "SMS_ALARM",
                                          "TemplateParam": "{}", "OutId": "n-2"})
        tampered = url2.update_query({"PhoneNumbers": "13900000000"})
        async with session.post(tampered, headers=headers2) as resp:
            assert resp.status == 400
            assert (await resp.json())["Code"] == "SignatureDoesNotMatch"
    await c.aclose()
    assert len(sim.sent) == 1


# --- templates -------------------------------------------------------------------------------------


async def test_a_notification_is_sent_with_its_kinds_template_and_answers_accepted(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    receipt = await c.deliver(note(), "send")
    await c.aclose()
    [sent] = sim.sent
    assert (sent.template_code, sent.sign_name, sent.out_id) == ("SMS_BILL_1", "绍兴燃气", "bill-B1")
    assert sent.params == {"account": "0001234567", "amount": "168.00"}
    assert receipt.reply is not None
    assert receipt.reply["status"] == "accepted"
    assert receipt.reply["provider_ref"] == sent.biz_id
    assert receipt.reply["notification_id"] == "bill-B1"


async def test_a_template_may_have_its_own_sign_name_and_pass_params_through(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    await c.deliver(note("alarm-1", "alarm", safety=True, params={"meter": "GM-1"}), "send")
    await c.aclose()
    assert (sim.sent[0].sign_name, sim.sent[0].params) == ("绍兴燃气安全", {"meter": "GM-1"})


async def test_a_kind_without_a_template_or_a_missing_param_is_a_permanent_error(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    with pytest.raises(PermanentError, match="no Aliyun SMS template for notification kind 'reminder'"):
        await c.deliver(note("rem-1", "reminder"), "send")
    with pytest.raises(PermanentError, match="needs param 'amount'"):
        await c.deliver(note("bill-2", params={"account_number": "1"}), "send")
    await c.aclose()
    assert sim.requests == 0


def test_a_template_code_or_variable_aliyun_would_not_take_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="template_code"):
        AliyunSmsSettings(access_key_id="a", access_key_secret="s",  # type: ignore[arg-type]
                          templates={"bill": {"template_code": "BILL"}})
    with pytest.raises(ValueError, match="not a name"):
        AliyunSmsSettings(access_key_id="a", access_key_secret="s",  # type: ignore[arg-type]
                          templates={"bill": {"template_code": "SMS_1", "params": {"1x": "a"}}})


# --- never twice -----------------------------------------------------------------------------------


async def test_a_notification_sent_once_is_answered_from_memory_not_sent_again(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    first = await c.deliver(note(), "send")
    again = await c.deliver(note(attempt=2), "send")
    await c.aclose()
    assert len(sim.sent) == 1
    assert again.partner_ref == first.partner_ref == sim.sent[0].biz_id


async def test_a_redelivered_attempt_in_another_process_is_not_sent_again(sim: AliyunSmsSimulator) -> None:
    claimed: set[str] = set()
    one = connector(sim, Clock(DAY), OnceContext(claimed))
    await one.deliver(note(), "send")
    await one.aclose()
    # The first process died before the hub recorded the delivery: the broker hands the same attempt on.
    two = connector(sim, Clock(DAY), OnceContext(claimed))
    receipt = await two.deliver(note(), "send")
    await two.aclose()
    assert len(sim.sent) == 1
    assert receipt.reply is not None
    assert receipt.reply["status"] == "accepted"


async def test_a_failed_attempt_is_sent_on_the_next_and_only_then(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    sim.fail_next = 1
    with pytest.raises(TransientError, match="503"):
        await c.deliver(note(attempt=1), "send")
    await c.deliver(note(attempt=2), "send")
    await c.deliver(note(attempt=3), "send")
    await c.aclose()
    assert [s.out_id for s in sim.sent] == ["bill-B1"]


async def test_aliyun_codes_are_sorted_into_hold_retry_and_refusal(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY), rate_limits=[])
    sim.answer_next = ["isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "isv.MOBILE_NUMBER_ILLEGAL"]
    with pytest.raises(Held):
        await c.deliver(note("n-1"), "send")
    with pytest.raises(TransientError, match=r"Throttling\.User"):
        await c.deliver(note("n-2"), "send")
    with pytest.raises(PermanentError, match=r"isv\.MOBILE_NUMBER_ILLEGAL"):
        await c.deliver(note("n-3"), "send")
    await c.aclose()
    assert not isinstance(Held("x", DAY), TransientError), "a hold must not count toward the breaker"
    assert Held("x", DAY).retriable


# --- rate limits, quiet hours, safety --------------------------------------------------------------


async def test_a_number_over_its_rate_limit_is_held_but_safety_goes_through(sim: AliyunSmsSimulator) -> None:
    clock = Clock(DAY)
    c = connector(sim, clock, rate_limits=[{"count": 1, "per_s": 60}, {"count": 2, "per_s": 3600}])
    await c.deliver(note("n-1"), "send")
    with pytest.raises(Held, match="rate limit 1 per 60s") as held:
        await c.deliver(note("n-2"), "send")
    assert held.value.until == DAY + timedelta(seconds=60)
    await c.deliver(note("alarm-1", "alarm", safety=True), "send")  # safety: not held
    await c.deliver(note("n-3", phone="13900000000"), "send")  # another number has its own budget
    clock.now = DAY + timedelta(seconds=61)
    with pytest.raises(Held, match="rate limit 2 per 3600s"):  # the safety SMS used up the hour's budget
        await c.deliver(note("n-2"), "send")
    clock.now = DAY + timedelta(hours=1, seconds=1)
    await c.deliver(note("n-2"), "send")
    await c.aclose()
    assert [s.out_id for s in sim.sent] == ["n-1", "alarm-1", "n-3", "n-2"]


@pytest.mark.parametrize(("local", "held"), [("21:29", False), ("21:30", True), ("23:59", True), ("03:00", True),
                                              ("07:59", True), ("08:00", False), ("12:00", False)])
async def test_quiet_hours_are_china_time_and_held_until_they_end(sim: AliyunSmsSimulator, local: str,
                                                                  held: bool) -> None:
    hour, minute = map(int, local.split(":"))
    now = datetime(2026, 3, 2, hour, minute, tzinfo=UTC) - timedelta(hours=8)  # that time in Shanghai
    c = connector(sim, Clock(now))
    if held:
        with pytest.raises(Held, match="quiet hours") as exc:
            await c.deliver(note(), "send")
        assert exc.value.until.astimezone(UTC).hour == 0  # 08:00 in Shanghai
        assert exc.value.until > now
        await c.deliver(note("alarm-1", "alarm", safety=True), "send")
        assert [s.out_id for s in sim.sent] == ["alarm-1"]
    else:
        await c.deliver(note(), "send")
        assert [s.out_id for s in sim.sent] == ["bill-B1"]
    await c.aclose()


async def test_concurrent_messages_to_one_number_share_its_budget_and_a_refusal_gives_it_back(
        sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY), rate_limits=[{"count": 1, "per_s": 60}])
    results = await asyncio.gather(c.deliver(note("n-1"), "send"), c.deliver(note("n-2"), "send"),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Held", "Receipt"]
    other = "13900000000"
    sim.answer_next = ["isv.TEMPLATE_MISSING_PARAMETERS"]
    with pytest.raises(PermanentError):
        await c.deliver(note("n-3", phone=other), "send")
    await c.deliver(note("n-4", phone=other), "send")  # the refused one did not use the number's budget
    await c.aclose()
    assert len(sim.sent) == 2


async def test_a_retry_after_a_timeout_finds_the_sms_aliyun_took_and_does_not_send_it_again(
        sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY), timeout_s=0.3, rate_limits=[])
    sim.stall_next, sim.stall_s = 1, 1.0
    with pytest.raises(ConnectorTimeout):
        await c.deliver(note(attempt=1), "send")
    receipt = await c.deliver(note(attempt=2), "send")
    await c.aclose()
    assert [s.out_id for s in sim.sent] == ["bill-B1"]
    assert receipt.reply is not None
    assert receipt.reply["status"] == "accepted"
    assert "earlier delivery" in receipt.detail


async def test_a_retry_whose_first_attempt_never_reached_aliyun_is_sent(sim: AliyunSmsSimulator) -> None:
    c = connector(sim, Clock(DAY))
    sim.down = True
    with pytest.raises(TransientError):
        await c.deliver(note(attempt=1), "send")
    sim.down = False
    sim.fail_next = 1  # the query itself fails: never guess "not sent"
    with pytest.raises(TransientError, match="QuerySendDetails"):
        await c.deliver(note(attempt=2), "send")
    await c.deliver(note(attempt=3), "send")
    await c.aclose()
    assert [s.out_id for s in sim.sent] == ["bill-B1"]


async def test_the_simulators_send_details_read_through_the_sdk(sim: AliyunSmsSimulator) -> None:
    client = sdk(sim.url)
    await client.send_sms_with_options_async(sdk_request("n-77"), RuntimeOptions())
    day = sim.sent[0].at.strftime("%Y%m%d")
    query = sms_models.QuerySendDetailsRequest(phone_number=PHONE, send_date=day, page_size=10, current_page=1)
    answer = await client.query_send_details_with_options_async(query, RuntimeOptions())
    assert answer.body.code == "OK"
    assert int(answer.body.total_count) == 1
    [detail] = answer.body.sms_send_detail_dtos.sms_send_detail_dto
    assert (detail.out_id, detail.phone_num, detail.send_status) == ("n-77", PHONE, 3)
