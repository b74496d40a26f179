"""The ops dashboard page: served without a token, wired to every ops endpoint, XSS-safe by construction.

The page is plain HTML/CSS/JS under hub/ops/static. These tests read the files, serve them through
the real dashboard handler and auth middleware, and run the JavaScript's pure helpers in node.
Node is required: a missing node fails the test rather than skipping it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hub.ops.api import STATIC, dashboard, ops_routes
from hub.web import errors_middleware, ops_auth_middleware

HTML = (STATIC / "dashboard.html").read_text(encoding="utf-8")
JS_PATH = STATIC / "dashboard.js"
JS = JS_PATH.read_text(encoding="utf-8")
CSS = (STATIC / "dashboard.css").read_text(encoding="utf-8")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the dashboard's JavaScript cannot be checked (install Node.js 20+)",
                    pytrace=False)
    return node


def _run_node(script: str, tz: str = "UTC") -> Any:
    """Run ``script`` in node with ``lib`` bound to the dashboard module; it prints one JSON value."""
    program = f"const lib = require({json.dumps(str(JS_PATH))});\n{script}"
    done = subprocess.run([_node(), "-e", program], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "TZ": tz}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------------------------- the page


async def test_page_and_assets_are_served_without_a_token() -> None:
    # The real handler and middlewares: /ops and /ops/static/* are open, they hold no data.
    app = web.Application(middlewares=[errors_middleware, ops_auth_middleware])
    app.router.add_get("/ops", dashboard)
    app.router.add_static("/ops/static", STATIC)
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/ops")
        assert page.status == 200
        assert page.content_type == "text/html"
        body = await page.text()
        for asset, kind in (("/ops/static/dashboard.js", "javascript"), ("/ops/static/dashboard.css", "text/css")):
            assert asset in body
            res = await client.get(asset)
            assert res.status == 200, asset
            assert kind in res.content_type, (asset, res.content_type)


def test_html_references_assets_title_and_footer() -> None:
    assert re.search(r'<script src="/ops/static/dashboard\.js" defer></script>', HTML)
    assert re.search(r'<link rel="stylesheet" href="/ops/static/dashboard\.css">', HTML)
    assert "<title>gashub operations</title>" in HTML
    footer = re.search(r"<footer\b.*?</footer>", HTML, re.S)
    assert footer is not None
    assert 'href="/metrics"' in footer.group(0)
    assert 'href="/health"' in footer.group(0)


def test_nothing_is_loaded_from_outside_the_hub() -> None:
    # The network is closed where the hub runs: no CDN, no web fonts, no external scripts.
    for name, text in (("html", HTML), ("js", JS), ("css", CSS)):
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), name
        assert "@import" not in text, name
    for attr in re.findall(r'\b(?:src|href)="([^"]*)"', HTML):
        assert attr.startswith(("/", "#", "data:")), attr
    # A CSP without 'unsafe-inline' backs up the escaping below.
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', HTML)
    assert csp is not None
    assert "script-src 'self'" in csp.group(1)
    assert "unsafe-inline" not in csp.group(1)
    assert "<script>" not in HTML
    assert "<style" not in HTML
    assert " style=" not in HTML


def test_page_is_keyboard_and_narrow_window_friendly() -> None:
    assert '<meta name="viewport"' in HTML
    assert "@media (max-width: 900px)" in CSS
    assert re.search(r"--font:[^;]*(PingFang SC|Microsoft YaHei|Noto Sans CJK SC)", CSS)
    # Actions are real buttons (focusable, Enter/Space work), never clickable divs or spans.
    assert not re.search(r"<(?:div|span|td|tr)[^>]*data-action=", JS + HTML)
    assert ":focus-visible" in CSS


# ---------------------------------------------------------------------------------------------- the API


def _api_paths() -> list[str]:
    paths = []
    for route in ops_routes():
        if isinstance(route, web.RouteDef) and route.path.startswith("/ops/"):
            paths.append(route.path)
    return paths


def test_js_calls_every_ops_endpoint() -> None:
    paths = _api_paths()
    assert set(paths) == {"/ops/messages", "/ops/messages/{id}/trace", "/ops/dead-letters",
                          "/ops/dead-letters/{id}/replay", "/ops/routes", "/ops/reconciliation"}
    for path in paths:
        if "{id}" in path:
            prefix, suffix = path.split("{id}")
            # The id is put into the path URL-encoded.
            encoded = r"\s*\+\s*encodeURIComponent\([^)]*\)\s*\+\s*"
            pattern = re.escape(f'"{prefix}"') + encoded + re.escape(f'"{suffix}"')
        else:
            pattern = r'api\(\s*' + re.escape(f'"{path}"')
        assert re.search(pattern, JS), f"dashboard.js does not call {path}"
    replay = re.search(r'"/replay",\s*\{\s*method:\s*"POST",\s*body:\s*body', JS)
    assert replay, "the replay is a POST with a JSON body"
    assert '"Content-Type"] = "application/json"' in JS
    assert "dry_run: true" in JS
    assert "dry_run: false" in JS
    assert "mapping_version" in JS


def test_js_sends_the_query_parameters_the_api_reads() -> None:
    api = (Path(__file__).resolve().parents[2] / "hub" / "ops" / "api.py").read_text(encoding="utf-8")
    read = set(re.findall(r'query\.get\("(\w+)"\)', api)) | set(re.findall(r'_(?:int|time_us)\(request, "(\w+)"', api))
    assert read >= {"type", "correlation_id", "since", "until", "limit", "before", "route", "status"}
    for name in read - {"dry_run"}:  # dry_run goes in the body
        assert re.search(rf"\b{name}:|\.{name} = ", JS), f"dashboard.js never sends {name}"


def test_js_sends_the_token_as_a_bearer_header_and_keeps_it_in_the_tab() -> None:
    assert re.search(r'Authorization:\s*"Bearer "\s*\+\s*state\.token', JS)
    assert "sessionStorage.setItem(TOKEN_KEY" in JS
    assert "localStorage" not in JS, "the token must not outlive the tab"
    # The #token=… convenience is read once and removed from the address bar and history entry.
    assert "#token=" in JS
    assert "history.replaceState" in JS
    # A 401 sends the person back to the form with the two places the token comes from.
    assert "res.status === 401" in JS
    assert "gashub demo" in JS
    assert "GASHUB_OPS__TOKEN" in JS


# ---------------------------------------------------------------------------------------------- XSS


def test_the_only_innerhtml_is_the_guarded_render() -> None:
    # Comments may mention innerHTML; drop block comments and whole-line // comments only.
    code = re.sub(r"/\*.*?\*/|^\s*//[^\n]*", "", JS, flags=re.S | re.M)
    assignments = re.findall(r"\.innerHTML\s*=[^=]", code)
    assert len(assignments) == 1, "innerHTML is assigned only in render()"
    render = re.search(r"function render\(el, content\) \{(.*?)\n  \}", code, re.S)
    assert render is not None
    body = render.group(1)
    guard, sink = body.index("instanceof SafeHtml"), body.index("el.innerHTML = content.markup")
    assert guard < sink
    assert "throw" in body[guard:sink]
    # SafeHtml is made in exactly one place, the html`` tag, which escapes each value via piece() → esc().
    assert len(re.findall(r"new SafeHtml\(", code)) == 1
    html_tag = re.search(r"function html\(strings\) \{(.*?)\n  \}", code, re.S)
    assert html_tag is not None
    assert "piece(arguments[i])" in html_tag.group(1)
    assert re.search(r"return esc\(value\);", code)
    # No other way to turn text into markup or code.
    for sink_name in ("outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc",
                      "createContextualFragment", "DOMParser", ".href =", "setAttribute(\"on"):
        assert sink_name not in code, sink_name


def test_interpolations_sit_only_in_text_or_quoted_attributes() -> None:
    # Escaping covers element text and quoted attribute values; it cannot make an unquoted attribute,
    # an event handler or a URL safe, so none of those take a ${…}.
    assert not re.search(r"=\$\{", JS), "unquoted attribute value"
    assert not re.search(r"""\son\w+=["']?[^"'>]*\$\{""", JS), "event handler attribute built from data"
    assert not re.search(r"""\s(?:href|src|action|formaction|style)=["'][^"']*\$\{""", JS), "URL or style from data"
    assert not re.search(r"<(?:script|style)\b[^`]*\$\{", JS)


def test_escaping_behaviour_in_node() -> None:
    out = _run_node(r"""
const evil = `"><img src=x onerror=alert(1)>'` + "`";
const esc = lib.esc(evil);
const inner = lib.html`<b>${evil}</b>`;
const markup = lib.html`<p title="${evil}">${evil}${[evil, inner]}${null}${undefined}${false}${0}</p>`.markup;
const el = { innerHTML: "" };
let rejected = null;
try { lib.render(el, "<img src=x onerror=alert(1)>"); } catch (e) { rejected = e.name; }
lib.render(el, lib.html`<i>${evil}</i>`);
console.log(JSON.stringify({ esc, markup, rejected, rendered: el.innerHTML }));
""")
    assert out["esc"] == "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&#39;&#96;"
    assert "<img" not in out["markup"]
    assert out["markup"].startswith('<p title="&quot;&gt;&lt;img')
    assert "<b>&quot;&gt;&lt;img" in out["markup"]  # nested html`` stays markup, its values stay escaped
    assert out["markup"].endswith("0</p>")  # null/undefined/false render as nothing, 0 as "0"
    assert out["rejected"] == "TypeError"
    assert out["rendered"] == "<i>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&#39;&#96;</i>"


# ---------------------------------------------------------------------------------------------- node


def test_js_parses_with_node() -> None:
    done = subprocess.run([_node(), "--check", str(JS_PATH)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr


def test_times_and_numbers_read_well() -> None:
    out = _run_node(r"""
console.log(JSON.stringify({
  time: lib.fmtTime(Date.UTC(2026, 10, 27, 6, 3, 12, 345) * 1000),
  timeMs: lib.fmtTime(Date.UTC(2026, 10, 27, 6, 3, 12, 345) * 1000, true),
  none: lib.fmtTime(null),
  int: lib.fmtInt(1234567.0), rate: lib.fmtRate(1234.56), dur: lib.fmtDuration(10096),
  iso: lib.localInputToIso("2026-11-27T14:03"), isoSec: lib.localInputToIso("2026-11-27T14:03:12"),
  empty: lib.localInputToIso(""),
}));
""", tz="Asia/Shanghai")
    assert out == {"time": "2026-11-27 14:03:12", "timeMs": "2026-11-27 14:03:12.345", "none": "—",
                   "int": "1,234,567", "rate": "1,234.6", "dur": "10.1 ms",
                   "iso": "2026-11-27T14:03:00+08:00", "isoSec": "2026-11-27T14:03:12+08:00", "empty": ""}


def test_time_range_uses_the_browser_offset_at_that_date() -> None:
    out = _run_node(r"""
console.log(JSON.stringify([lib.localInputToIso("2026-01-15T08:00"), lib.localInputToIso("2026-07-15T08:00:30")]));
""", tz="America/New_York")
    assert out == ["2026-01-15T08:00:00-05:00", "2026-07-15T08:00:30-04:00"]


def _route(name: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "from": "a.b", "to": "core:x", "lane": "normal", "queue": f"q.{name}", "depth": 0,
            "consumers": 1, "rate_per_s": 1.5, "dead_letters_open": 0, "breaker": None, **kw}


def _summary(payload: dict[str, Any]) -> Any:
    return _run_node(f"console.log(JSON.stringify(lib.summarize({json.dumps(payload)}, [])));")


def test_summary_says_in_words_what_needs_attention() -> None:
    calm = _summary({"routes": [_route("a"), _route("b", lane="safety")], "outbox_pending": 0})
    assert (calm["level"], calm["headline"]) == ("ok", "All routes flowing")
    assert calm["totalRate"] == 3.0

    dead = _summary({"routes": [_route("a", dead_letters_open=2), _route("b", dead_letters_open=1), _route("c")],
                     "outbox_pending": 0})
    assert (dead["level"], dead["headline"]) == ("warn", "2 routes have dead letters")
    assert dead["openDead"] == 3
    assert "2 routes have 3 open dead letters" in dead["issues"][0]["text"]

    broken = _summary({"routes": [_route("sms", to="sms:send", breaker={"state": "open", "retry_in_s": 2.2}),
                                  _route("b", depth=None, consumers=None)], "outbox_pending": 5})
    assert broken["level"] == "bad"
    assert broken["headline"].startswith("1 breaker open")
    texts = " ".join(i["text"] for i in broken["issues"])
    assert "sms:send are paused, next try in 3 s" in texts
    assert "broker does not answer" in texts


def test_summary_counts_invoice_requests_waiting_for_the_tax_platform() -> None:
    routes = [_route("invoices-tax", to="tax:issue", breaker={"state": "open", "retry_in_s": 4})]
    fresh = _summary({"routes": routes, "outbox_pending": 0,
                      "invoice_requests": {"waiting": 3, "oldest_requested_at": "2999-01-01T00:00:00+00:00"}})
    assert (fresh["invoicesWaiting"], fresh["hasInvoices"]) == (3, True)
    assert not any("invoice request" in i["text"] for i in fresh["issues"])  # just asked: no alarm yet
    old = _summary({"routes": routes, "outbox_pending": 0,
                    "invoice_requests": {"waiting": 3, "oldest_requested_at": "2020-01-01T00:00:00+00:00"}})
    texts = " ".join(i["text"] for i in old["issues"])
    assert "3 invoice requests waiting for the tax platform" in texts
    assert "tax:issue are paused" in texts
    assert _summary({"routes": routes, "outbox_pending": 0})["hasInvoices"] is False


def test_dry_run_table_when_the_current_mapping_fails() -> None:
    # The API lists changes only when both mappings succeed; the page still shows the fields.
    result = {"current": {"mapping": "m@1", "output": None, "error": "'lots' is not litres"},
              "proposed": {"mapping": "m@2", "output": {"meter_id": "1", "reading": {"m3": "2.5"}}, "error": None},
              "changes": []}
    out = _run_node(f"console.log(JSON.stringify(lib.dryRunRows({json.dumps(result)})));")
    assert out["kind"] == "fixed"
    assert [(r["field"], r["after"], r["missingBefore"]) for r in out["rows"]] == [
        ("meter_id", "1", True), ("reading.m3", "2.5", True)]
    changed = {**result, "current": {"mapping": "m@1", "output": {"a": 1}, "error": None},
               "changes": [{"field": "a", "before": 1, "after": 2}]}
    out = _run_node(f"console.log(JSON.stringify(lib.dryRunRows({json.dumps(changed)})));")
    assert out["kind"] == "changes"
    assert out["rows"][0]["before"] == 1
    assert out["rows"][0]["after"] == 2


def test_trace_groups_hops_under_their_message_in_order() -> None:
    trace = {
        "message_id": "m2", "correlation_id": "m1",
        "messages": [{"id": "m2", "stored_us": 300, "time_us": 290}, {"id": "m1", "stored_us": 100, "time_us": 90}],
        "hops": [{"seq": 3, "message_id": "m2", "at_us": 310}, {"seq": 2, "message_id": "m1", "at_us": 150},
                 {"seq": 1, "message_id": "m1", "at_us": 110}, {"seq": 4, "message_id": "gone", "at_us": 400}],
    }
    out = _run_node(f"""
const g = lib.traceGroups({json.dumps(trace)});
console.log(JSON.stringify(g.map(x => [x.message ? x.message.id : "?" + x.messageId, x.hops.map(h => h.seq)])));
""")
    assert out == [["m1", [1, 2]], ["m2", [3]], ["?gone", [4]]]


def test_sparkline_keeps_the_newest_sample_on_the_right() -> None:
    out = _run_node('console.log(JSON.stringify(lib.sparkPoints([0, 0.5, 2], 120, 28).split(" ")));')
    assert len(out) == 3
    xs = [float(p.split(",")[0]) for p in out]
    ys = [float(p.split(",")[1]) for p in out]
    assert xs[-1] == 120.0
    assert xs == sorted(xs)
    assert ys[0] == 27.0
    assert ys[-1] == 1.0


def _recon(channel: str, open_by_kind: dict[str, int], lines: int = 100) -> dict[str, Any]:
    return {"run": {"id": "R1", "channel": channel, "statement_date": "2026-11-26", "lines": lines, "matched": lines},
            "open_by_kind": open_by_kind, "open_items": []}


def test_reconciliation_summary_says_in_words_what_is_open() -> None:
    channels = [_recon("wechat", {}), _recon("alipay", {"missing_in_statement": 2, "duplicated": 1}),
                _recon("unionpay", {"amount_mismatch": 1, "missing_in_core": 3})]
    out = _run_node(f"console.log(JSON.stringify(lib.reconSummary({json.dumps(channels)})));")
    assert [(s["label"], s["day"], s["open"], s["level"]) for s in out] == [
        ("WeChat Pay", "2026-11-26", 0, "ok"), ("Alipay", "2026-11-26", 3, "warn"),
        ("UnionPay", "2026-11-26", 4, "bad")]
    assert out[0]["headline"] == "all 100 lines match"
    assert out[1]["headline"] == "1 listed twice, 2 missing in the statement"
    assert out[2]["headline"] == "3 missing in the hub, 1 different amount"


def test_reconciliation_panel_is_on_the_page_and_in_the_jump_menu() -> None:
    assert 'id="recon"' in HTML
    assert 'href="#recon"' in HTML
    assert 'data-action="recon-refresh"' in HTML
    assert "gashub reconcile import" in HTML
