/* gashub operations dashboard.
 *
 * Plain JavaScript: no build step, no framework, nothing fetched from outside this hub.
 *
 * Safety rule for this file: text from the API never reaches the page as markup. Markup is built
 * only with the html`…` template tag, which escapes every interpolated value with esc(); render()
 * is the one place that assigns innerHTML, and it refuses anything that html`…` did not build.
 *
 * The pure helpers (formatting, the summary wording, the sparkline, the dry-run table) are exported
 * for node so tests can run them; the page starts only where there is a document.
 */
(function (factory) {
  "use strict";
  var lib = factory();
  if (typeof module === "object" && module && module.exports) module.exports = lib;
  if (typeof window !== "undefined" && typeof document !== "undefined") lib.start(window, document);
})(function () {
  "use strict";

  var REFRESH_MS = 2000;
  var SAMPLES = 60; // per route: 60 samples × 2 s = the last two minutes
  var TOKEN_KEY = "gashub.ops.token";
  var OUTCOMES = ["delivered", "duplicate", "retry", "dead", "filtered"];
  var FAILED = new Set(["retry", "dead", "rejected"]); // hop outcomes whose "error" is a failure, not a note
  var BACKLOG_WARN = 1000; // queue depth that counts as "backing up"
  var OUTBOX_STUCK_SAMPLES = 15; // outbox non-empty for 30 s
  var INVOICE_WAIT_WARN_S = 60; // an invoice request unanswered this long is worth a line

  // ---------------------------------------------------------------- escaping and markup

  var ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

  /** Text made safe for element content and for quoted attribute values. */
  function esc(value) {
    if (value === null || value === undefined) return "";
    return String(value).replace(/[&<>"'`]/g, function (c) { return ESCAPES[c]; });
  }

  /** Markup built by html`…`: the only thing render() accepts. */
  function SafeHtml(markup) { this.markup = markup; }

  function piece(value) {
    if (value instanceof SafeHtml) return value.markup;
    if (Array.isArray(value)) return value.map(piece).join("");
    if (value === null || value === undefined || value === false) return "";
    return esc(value);
  }

  /** Template tag: the literal parts are trusted markup, every ${value} is escaped. */
  function html(strings) {
    var out = strings[0];
    for (var i = 1; i < strings.length; i++) out += piece(arguments[i]) + strings[i];
    return new SafeHtml(out);
  }

  /** The only innerHTML assignment in this file. */
  function render(el, content) {
    if (!(content instanceof SafeHtml)) throw new TypeError("render() takes markup built by html`…` only");
    el.innerHTML = content.markup;
  }

  // ---------------------------------------------------------------- formatting

  var INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var ONE = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });

  function isNum(n) { return typeof n === "number" && isFinite(n); }
  function fmtInt(n) { return isNum(n) ? INT.format(Math.round(n)) : "—"; }
  function fmtRate(n) { return isNum(n) ? ONE.format(n) : "—"; }
  function pad(n, width) { return String(n).padStart(width || 2, "0"); }

  /** Microseconds since the epoch → local "2026-11-27 14:03:12" (".345" with ms). */
  function fmtTime(us, withMs) {
    if (!isNum(us)) return "—";
    var d = new Date(us / 1000);
    var s = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
    return withMs ? s + "." + pad(d.getMilliseconds(), 3) : s;
  }

  function fmtClock(ms) {
    var d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fmtAgo(us, nowMs) {
    if (!isNum(us)) return "";
    var s = Math.max(0, Math.round((nowMs - us / 1000) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  /** Microseconds → "10.1 ms" / "1.2 s". */
  function fmtDuration(us) {
    if (!isNum(us)) return "—";
    if (us >= 1e6) return ONE.format(us / 1e6) + " s";
    return ONE.format(us / 1000) + " ms";
  }

  function fmtBytes(n) { return isNum(n) ? INT.format(n) + " B" : "—"; }

  function plural(n, one, many) { return fmtInt(n) + " " + (n === 1 ? one : many); }

  /** A dotted or colon name ("vendor.demo.reading") that wraps only after its separators. */
  function dotted(text) {
    var parts = String(text === null || text === undefined ? "" : text).split(/(?<=[.:])/);
    return html`${parts.map(function (p, i) { return i < parts.length - 1 ? html`${p}<wbr>` : p; })}`;
  }

  function shortId(id) { return id ? String(id).slice(-8) : ""; }

  /** A datetime-local value ("2026-11-27T14:03" or with seconds) → ISO 8601 with this browser's
   * offset at that moment, e.g. "2026-11-27T14:03:00+08:00". "" stays "". */
  function localInputToIso(value) {
    if (!value) return "";
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/.exec(value);
    if (!m) throw new Error("not a date and time: " + value);
    var ms = m[7] ? Number((m[7] + "00").slice(0, 3)) : 0;
    var d = new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6] || 0), ms);
    var off = -d.getTimezoneOffset();
    var sign = off >= 0 ? "+" : "-";
    var abs = Math.abs(off);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + (ms ? "." + pad(d.getMilliseconds(), 3) : "") +
      sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
  }

  /** A Date → the value a datetime-local input shows (local, to the second). */
  function toLocalInput(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" +
      pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  /** "vendor-meter-reading@2" → {name, version}. */
  function parseMapping(label) {
    if (!label) return null;
    var at = String(label).lastIndexOf("@");
    if (at < 0) return { name: String(label), version: null };
    return { name: label.slice(0, at), version: label.slice(at + 1) };
  }

  // ---------------------------------------------------------------- pure views of the data

  /** The sentence a person on shift reads first, and the reasons behind it. */
  function summarize(payload, outboxHistory) {
    var routes = (payload && payload.routes) || [];
    var issues = [];
    var totalRate = 0, openDead = 0, deadRoutes = 0, openBreakers = 0;
    routes.forEach(function (r) {
      if (isNum(r.rate_per_s)) totalRate += r.rate_per_s;
      var n = r.dead_letters_open || 0;
      openDead += n;
      if (n > 0) deadRoutes += 1;
      var b = r.breaker;
      if (b && b.state === "open") {
        openBreakers += 1;
        issues.push({ level: "bad", text: "Breaker open on " + r.name + ": calls to " + r.to +
          " are paused, next try in " + Math.max(0, Math.ceil(b.retry_in_s || 0)) + " s." });
      } else if (b && b.state === "half-open") {
        issues.push({ level: "warn", text: "Breaker half-open on " + r.name + ": one trial call to " + r.to +
          " decides whether traffic resumes." });
      }
      if (r.depth === null || r.depth === undefined) {
        issues.push({ level: "bad", text: r.name + ": the broker does not answer for queue " + r.queue + "." });
      } else if (r.consumers === 0) {
        issues.push({ level: "bad", text: r.name + ": nobody is consuming its queue (" + plural(r.depth, "message", "messages") + " waiting)." });
      } else if (r.depth >= BACKLOG_WARN) {
        issues.push({ level: "warn", text: r.name + " is backing up: " + plural(r.depth, "message", "messages") + " waiting." });
      }
    });
    if (deadRoutes > 0) {
      issues.push({ level: "warn", text: (deadRoutes === 1 ? "1 route has " : fmtInt(deadRoutes) + " routes have ") +
        plural(openDead, "open dead letter", "open dead letters") + " waiting for a decision." });
    }
    var pending = payload ? payload.outbox_pending || 0 : 0;
    var hist = outboxHistory || [];
    if (pending > 0 && hist.length >= OUTBOX_STUCK_SAMPLES &&
        hist.slice(-OUTBOX_STUCK_SAMPLES).every(function (v) { return v > 0; })) {
      issues.push({ level: "warn", text: "The outbox has had messages waiting for over 30 s (" + fmtInt(pending) + " now): is the broker reachable?" });
    }
    var inv = (payload && payload.invoice_requests) || null;
    var invoicesWaiting = inv ? inv.waiting || 0 : 0;
    var invoiceAge = inv && inv.oldest_requested_at ? (Date.now() - Date.parse(inv.oldest_requested_at)) / 1000 : 0;
    if (invoicesWaiting > 0 && invoiceAge > INVOICE_WAIT_WARN_S) {
      issues.push({ level: "warn", text: plural(invoicesWaiting, "invoice request", "invoice requests") +
        " waiting for the tax platform, the oldest for " + fmtInt(Math.floor(invoiceAge / 60)) + " min." });
    }
    var level = issues.some(function (i) { return i.level === "bad"; }) ? "bad" : issues.length ? "warn" : "ok";
    var headline;
    if (!routes.length) {
      headline = "No routes are configured";
      level = "warn";
    } else if (!issues.length) {
      headline = totalRate > 0 ? "All routes flowing" : "All routes healthy, no traffic right now";
    } else {
      var parts = [];
      if (openBreakers) parts.push(openBreakers === 1 ? "1 breaker open" : fmtInt(openBreakers) + " breakers open");
      if (deadRoutes) parts.push(deadRoutes === 1 ? "1 route has dead letters" : fmtInt(deadRoutes) + " routes have dead letters");
      var other = issues.length - openBreakers - (deadRoutes ? 1 : 0);
      if (other > 0) parts.push(other === 1 ? "1 other problem" : fmtInt(other) + " other problems");
      headline = parts.join(" · ");
    }
    return { level: level, headline: headline, issues: issues, totalRate: totalRate, openDead: openDead,
      openBreakers: openBreakers, outboxPending: pending, invoicesWaiting: invoicesWaiting,
      hasInvoices: !!inv, routes: routes.length };
  }

  /** Sparkline points for an SVG polyline, newest on the right; the scale is at least 1/s so a
   * trickle does not look like a flood. */
  function sparkPoints(samples, width, height) {
    var n = samples.length;
    if (!n) return "";
    var max = Math.max(1, Math.max.apply(null, samples.map(function (v) { return isNum(v) ? v : 0; })));
    var step = width / (SAMPLES - 1);
    var x0 = width - (n - 1) * step;
    return samples.map(function (v, i) {
      var y = height - 1 - ((isNum(v) ? v : 0) / max) * (height - 2);
      return (x0 + i * step).toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
  }

  /** {"a": {"b": 1}} → [["a.b", 1]], lists as "items[0]". */
  function flatten(value, prefix, out) {
    out = out || [];
    prefix = prefix || "";
    if (value && typeof value === "object") {
      var keys = Array.isArray(value) ? value.map(function (_, i) { return i; }) : Object.keys(value);
      if (!keys.length) out.push([prefix || "(root)", Array.isArray(value) ? [] : {}]);
      keys.forEach(function (k) {
        var p = Array.isArray(value) ? prefix + "[" + k + "]" : (prefix ? prefix + "." + k : String(k));
        flatten(value[k], p, out);
      });
    } else {
      out.push([prefix || "(value)", value]);
    }
    return out;
  }

  /** The rows of the dry-run table. The API lists changes only when both mappings succeed; when
   * one of them fails, the other's output is shown field by field against nothing. */
  function dryRunRows(result) {
    if (result.changes && result.changes.length) {
      return { kind: "changes", rows: result.changes.map(function (c) { return { field: c.field, before: c.before, after: c.after, missingBefore: false, missingAfter: false }; }) };
    }
    var cur = result.current || {}, pro = result.proposed || {};
    if (cur.error && !pro.error && pro.output !== null && pro.output !== undefined) {
      return { kind: "fixed", rows: flatten(pro.output).map(function (p) { return { field: p[0], before: null, after: p[1], missingBefore: true, missingAfter: false }; }) };
    }
    if (!cur.error && pro.error && cur.output !== null && cur.output !== undefined) {
      return { kind: "broken", rows: flatten(cur.output).map(function (p) { return { field: p[0], before: p[1], after: null, missingBefore: false, missingAfter: true }; }) };
    }
    if (cur.error && pro.error) return { kind: "both-fail", rows: [] };
    return { kind: "same", rows: [] };
  }

  /** Messages of a flow, each with its own hops, in the order they happened; hops of messages the
   * store does not hold (refused input, say) get a group of their own. */
  function traceGroups(trace) {
    var byMsg = new Map();
    var groups = (trace.messages || []).map(function (m) {
      var g = { message: m, hops: [], first: isNum(m.stored_us) ? m.stored_us : m.time_us };
      byMsg.set(m.id, g);
      return g;
    });
    (trace.hops || []).forEach(function (h) {
      var g = byMsg.get(h.message_id);
      if (!g) {
        g = { message: null, messageId: h.message_id, hops: [], first: h.at_us };
        byMsg.set(h.message_id, g);
        groups.push(g);
      }
      g.hops.push(h);
    });
    groups.forEach(function (g) {
      g.hops.sort(function (a, b) { return a.seq - b.seq; });
      g.hops.forEach(function (h) { if (isNum(h.at_us) && (!isNum(g.first) || h.at_us < g.first)) g.first = h.at_us; });
    });
    groups.sort(function (a, b) { return (a.first || 0) - (b.first || 0); });
    return groups;
  }

  // ---------------------------------------------------------------- the page

  var CHANNELS = { wechat: "WeChat Pay", alipay: "Alipay", unionpay: "UnionPay", ecny: "e-CNY", bank: "Bank" };
  var KIND_WORDS = {
    missing_in_core: ["missing in the hub", "the channel took the money; the hub has no such payment"],
    missing_in_statement: ["missing in the statement", "the hub recorded it; the channel's statement does not list it"],
    duplicated: ["listed twice", "the statement lists the same transaction again"],
    amount_mismatch: ["different amount", "both know it, with different amounts"],
    status_mismatch: ["different state", "refunded or reversed on one side only"],
  };
  var KIND_ORDER = ["missing_in_core", "amount_mismatch", "status_mismatch", "duplicated", "missing_in_statement"];

  /** Per channel, its latest run in words: which day, how much matched, what is open. */
  function reconSummary(channels) {
    return (channels || []).map(function (c) {
      var byKind = c.open_by_kind || {};
      var open = KIND_ORDER.reduce(function (n, k) { return n + (byKind[k] || 0); }, 0);
      var words = KIND_ORDER.filter(function (k) { return byKind[k]; }).map(function (k) {
        return fmtInt(byKind[k]) + " " + KIND_WORDS[k][0];
      });
      var run = c.run || {};
      return {
        channel: run.channel, label: CHANNELS[run.channel] || run.channel, day: run.statement_date,
        lines: run.lines, matched: run.matched, open: open, level: open ? (byKind.missing_in_core || byKind.amount_mismatch ? "bad" : "warn") : "ok",
        headline: open ? words.join(", ") : "all " + fmtInt(run.lines) + " lines match",
      };
    });
  }

  function start(win, doc) {
    var $ = function (id) { return doc.getElementById(id); };
    var state = {
      token: null,
      timer: null,
      routes: null,
      routesAt: 0,
      fetchError: null,
      series: new Map(),
      total: [],
      outbox: [],
      lastOpenDead: null,
      dl: { route: "", status: "open", cursors: [null], next: null, items: null, error: null, loading: false, baseline: null },
      msg: { query: {}, cursors: [null], next: null, items: null, error: null, loading: false },
      recon: { channels: null, error: null, loading: false },
      knownTypes: new Set(),
      pending: null, // the replay being confirmed: {id, route, version}
      pointerDown: false, // a click in progress: do not swap the routes table under it
      refreshing: false,
      opener: null,
    };

    function ApiError(status, title, detail) {
      this.status = status;
      this.title = title;
      this.detail = detail;
      this.message = title + (detail ? ": " + detail : "");
    }

    async function api(path, opts) {
      opts = opts || {};
      var url = new URL(path, win.location.origin);
      Object.keys(opts.query || {}).forEach(function (k) {
        var v = opts.query[k];
        if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, String(v));
      });
      var headers = { Accept: "application/json", Authorization: "Bearer " + state.token };
      if (opts.body !== undefined) headers["Content-Type"] = "application/json";
      var res;
      try {
        res = await win.fetch(url.toString(), {
          method: opts.method || "GET", headers: headers, cache: "no-store", credentials: "same-origin",
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        });
      } catch (e) {
        throw new ApiError(0, "Cannot reach the hub", "the request did not get an answer (is the hub running?)");
      }
      var text = await res.text();
      var data = null;
      try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
      if (res.status === 401) {
        askForToken(true);
        throw new ApiError(401, "Unauthorized", "the ops token was refused");
      }
      if (!res.ok) {
        var title = (data && data.title) || res.statusText || "Error";
        var detail = (data && data.detail) || (data ? "" : text.slice(0, 300));
        throw new ApiError(res.status, res.status + " " + title, detail);
      }
      return data;
    }

    // ------------------------------------------------------------ token

    function readFragmentToken() {
      var m = /^#token=([^&]+)/.exec(win.location.hash || "");
      if (!m) return null;
      var token = null;
      try { token = decodeURIComponent(m[1]); } catch (e) { token = m[1]; }
      // Once read, the token leaves the address bar and this history entry.
      win.history.replaceState(null, "", win.location.pathname + win.location.search);
      return token;
    }

    function storeToken(token) {
      state.token = token;
      try { win.sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode: keep it in memory */ }
    }

    function forgetToken() {
      state.token = null;
      try { win.sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    }

    /** Show the token form; refused=true when the hub answered 401 to the token we had. */
    function askForToken(refused) {
      stopRefresh();
      forgetToken();
      $("app").hidden = true;
      $("forget").hidden = true;
      $("jump").hidden = true;
      $("login").hidden = false;
      var msg = $("login-error");
      render(msg, refused ? html`The hub refused this token (401). Paste the token printed by <code>gashub demo</code>
        (on its <q>dashboard</q> line), or the value of <code>GASHUB_OPS__TOKEN</code> this hub was started with.` : html``);
      msg.hidden = !refused;
      setStatus("warn", refused ? "Not signed in: the token was refused" : "Not signed in", "");
      $("token-input").value = "";
      $("token-input").focus();
    }

    function connect() {
      $("login").hidden = true;
      $("app").hidden = false;
      $("forget").hidden = false;
      $("jump").hidden = false;
      setStatus("idle", "Connecting…", "");
      refreshRoutes().then(function () {
        if (!state.token) return;
        loadDeadLetters();
        loadMessages();
        loadReconciliation();
      });
    }

    // ------------------------------------------------------------ status line

    /** The header line. Only the headline is a live region, and it is touched only when it changes,
     * so a screen reader hears "1 breaker open", not "updated 14:03:12" every two seconds. */
    function setStatus(level, headline, sub) {
      $("status").className = "status status-" + level;
      var head = $("status-head");
      if (head.textContent !== headline) head.textContent = headline;
      $("status-sub").textContent = sub || "";
    }

    // ------------------------------------------------------------ routes

    function stopRefresh() {
      if (state.timer) win.clearTimeout(state.timer);
      state.timer = null;
    }

    function schedule() {
      stopRefresh();
      if (state.token) state.timer = win.setTimeout(refreshRoutes, REFRESH_MS);
    }

    function pushSample(list, value) {
      list.push(value);
      if (list.length > SAMPLES) list.splice(0, list.length - SAMPLES);
    }

    async function refreshRoutes() {
      if (!state.token || state.refreshing) return;
      if (doc.hidden) { schedule(); return; }
      state.refreshing = true;
      try {
        var data = await api("/ops/routes");
        state.routes = data;
        state.routesAt = Date.now();
        state.fetchError = null;
        var seen = new Set();
        (data.routes || []).forEach(function (r) {
          seen.add(r.name);
          if (!state.series.has(r.name)) state.series.set(r.name, []);
          pushSample(state.series.get(r.name), r.rate_per_s);
          if (r.from) state.knownTypes.add(r.from);
        });
        state.series.forEach(function (_, name) { if (!seen.has(name)) state.series.delete(name); });
        var sum = summarize(data, state.outbox);
        pushSample(state.total, sum.totalRate);
        pushSample(state.outbox, data.outbox_pending || 0);
        state.lastOpenDead = sum.openDead;
        noticeNewDeadLetters();
      } catch (e) {
        state.refreshing = false;
        if (e.status === 401) return;
        state.fetchError = e;
      }
      state.refreshing = false;
      drawRoutes();
      schedule();
    }

    function selectionInside(el) {
      var sel = win.getSelection && win.getSelection();
      return !!(sel && !sel.isCollapsed && sel.anchorNode && el.contains(sel.anchorNode));
    }

    /** Re-render, keeping keyboard focus and opened <details> where they were. */
    function renderKeep(el, content) {
      var active = doc.activeElement;
      var focusKey = active && el.contains(active) ? active.getAttribute("data-key") : null;
      var open = new Set(Array.prototype.map.call(el.querySelectorAll("details[open][data-key]"),
        function (d) { return d.getAttribute("data-key"); }));
      render(el, content);
      Array.prototype.forEach.call(el.querySelectorAll("details[data-key]"), function (d) {
        if (open.has(d.getAttribute("data-key"))) d.open = true;
      });
      if (focusKey) {
        var target = Array.prototype.find.call(el.querySelectorAll("[data-key]"),
          function (n) { return n.getAttribute("data-key") === focusKey; });
        if (target) target.focus({ preventScroll: true });
      }
    }

    function spark(samples, label, cls, width) {
      var w = width || 120, h = 28;
      var pts = sparkPoints(samples, w, h);
      var peak = samples.length ? Math.max.apply(null, samples.map(function (v) { return isNum(v) ? v : 0; })) : 0;
      var title = label + ": last " + Math.round(samples.length * REFRESH_MS / 1000) + " s, peak " + fmtRate(peak) + "/s";
      if (!pts) return html`<svg class="spark ${cls || ""}" width="${w}" height="${h}" role="img" aria-label="${title}"></svg>`;
      var first = pts.split(" ")[0].split(",")[0];
      var area = first + "," + h + " " + pts + " " + w + "," + h;
      return html`<svg class="spark ${cls || ""}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="${title}"><title>${title}</title><polygon class="spark-area" points="${area}"></polygon><polyline class="spark-line" points="${pts}"></polyline></svg>`;
    }

    function breakerCell(b) {
      if (!b) return html`<span class="muted" title="This route delivers inside the hub: no partner, no breaker">—</span>`;
      var opened = b.opened ? html`<span class="muted small">opened ${plural(b.opened, "time", "times")}</span>` : "";
      if (b.state === "open") {
        return html`<span class="pill pill-bad">open</span><span class="small">retry in ${Math.max(0, Math.ceil(b.retry_in_s || 0))} s</span>${opened}`;
      }
      if (b.state === "half-open") return html`<span class="pill pill-warn">half-open</span><span class="small">trying one call</span>${opened}`;
      return html`<span class="pill pill-ok">${b.state}</span>${opened}`;
    }

    function longText(text, key, cls) {
      if (!text) return html`<span class="muted">—</span>`;
      if (text.length <= 90) return html`<span class="${cls || ""}">${text}</span>`;
      return html`<details class="long" data-key="${key}"><summary data-key="${key}:s" class="${cls || ""}">${text.slice(0, 80)}…</summary><div class="${cls || ""}">${text}</div></details>`;
    }

    function routeRow(r) {
      var samples = state.series.get(r.name) || [];
      var m = parseMapping(r.mapping);
      var settled = r.settled || {};
      var safety = r.lane === "safety";
      var queue = r.depth === null || r.depth === undefined
        ? html`<span class="pill pill-bad" title="The broker did not answer for ${r.queue}">no answer</span>`
        : html`<span class="num ${r.depth >= BACKLOG_WARN ? "warn-text" : ""}">${fmtInt(r.depth)}</span> <span class="muted small">waiting</span>${
            r.delayed ? html` <span class="muted small" title="In the route's delay queues, for their next attempt">+ ${fmtInt(r.delayed)} to retry</span>` : ""}${
            r.in_hand ? html` <span class="muted small" title="Taken by this process's consumer, not yet settled (waiting for the partner or its breaker)">+ ${fmtInt(r.in_hand)} in hand</span>` : ""}`;
      var consumers = r.consumers === null || r.consumers === undefined ? "?" : fmtInt(r.consumers);
      var dead = r.dead_letters_open
        ? html`<button type="button" class="count-btn" data-action="dl-route" data-route="${r.name}" data-key="dl:${r.name}" title="Show the open dead letters of ${r.name}">${fmtInt(r.dead_letters_open)} open</button>`
        : html`<span class="muted">0</span>`;
      return html`<tr class="${safety ? "lane-safety" : ""}">
        <td data-label="Route" class="route-cell wide">
          <div class="route-name">${r.name}${safety ? html` <span class="pill pill-safety" title="Safety lane: own queues, never waits behind billing traffic">SAFETY</span>` : html` <span class="pill pill-lane">normal</span>`}</div>
          <div class="flow"><code>${dotted(r.from)}</code> <span aria-label="to">→</span> <code>${dotted(r.to)}</code></div>
          <div class="muted small">${m ? html`mapping ${m.name} <strong>v${m.version}</strong>` : "no mapping"}${r.running_here ? "" : html` · <span class="warn-text">not consumed by this hub</span>`}</div>
        </td>
        <td data-label="Queue">${queue}<div class="muted small">${consumers} ${r.consumers === 1 ? "consumer" : "consumers"}</div></td>
        <td data-label="Rate" class="rate-cell"><div><span class="num big">${fmtRate(r.rate_per_s)}</span><span class="muted small">/s</span></div>${spark(samples, "Rate of " + r.name, safety ? "spark-safety" : "")}</td>
        <td data-label="Settled" class="wide-2"><dl class="settled">${OUTCOMES.map(function (o) {
          var v = settled[o] || 0;
          return html`<div class="oc oc-${o} ${v ? "" : "zero"}"><dt>${o}</dt><dd>${fmtInt(v)}</dd></div>`;
        })}</dl></td>
        <td data-label="Dead letters">${dead}</td>
        <td data-label="Breaker" class="breaker-cell">${breakerCell(r.breaker)}</td>
        <td data-label="Last error" class="err-cell wide">${longText(r.last_error, "err:" + r.name, "err-text")}</td>
      </tr>`;
    }

    function drawRoutes() {
      var data = state.routes;
      var sum = summarize(data, state.outbox);
      var stale = state.fetchError;
      if (stale) {
        setStatus("bad", stale.status === 0 ? "Cannot reach the hub" : "The hub answered with an error",
          stale.message + (state.routesAt ? " · showing data from " + fmtClock(state.routesAt) : "") + " · retrying every 2 s");
      } else if (data) {
        setStatus(sum.level, sum.headline, plural(sum.routes, "route", "routes") + " · " + fmtRate(sum.totalRate) + " msg/s · updated " + fmtClock(state.routesAt));
      }
      $("app").classList.toggle("stale", !!stale);
      $("nav-dl-count").textContent = data && sum.openDead ? " (" + fmtInt(sum.openDead) + ")" : "";
      if (!data) {
        if (stale) render($("routes-body"), html`<p class="error-box">${stale.message}</p>`);
        return;
      }
      var breakersOpen = (data.routes || []).filter(function (r) { return r.breaker && r.breaker.state !== "closed"; });
      renderKeep($("overview"), html`
        <div class="tile tile-${sum.level}">
          <div class="tile-label">Now</div>
          <div class="tile-value headline">${sum.headline}</div>
          ${sum.issues.length ? html`<ul class="issues">${sum.issues.map(function (i) { return html`<li class="issue-${i.level}">${i.text}</li>`; })}</ul>` : html`<div class="muted small">Nothing needs attention.</div>`}
        </div>
        <div class="tile">
          <div class="tile-label">Total rate</div>
          <div class="tile-value"><span class="num">${fmtRate(sum.totalRate)}</span> <span class="unit">msg/s</span></div>
          ${spark(state.total, "Total rate", "spark-total", 200)}
        </div>
        <div class="tile ${sum.openDead ? "tile-warn" : ""}">
          <div class="tile-label">Open dead letters</div>
          <div class="tile-value"><span class="num">${fmtInt(sum.openDead)}</span></div>
          <div class="muted small">${sum.openDead ? html`<a href="#deadletters" data-action="dl-all" data-key="review">review them</a>` : "none waiting"}</div>
        </div>
        <div class="tile">
          <div class="tile-label">Outbox pending</div>
          <div class="tile-value"><span class="num">${fmtInt(sum.outboxPending)}</span></div>
          <div class="muted small">${sum.outboxPending ? "waiting to be published" : "all published"}</div>
        </div>
        ${sum.hasInvoices ? html`<div class="tile ${sum.invoicesWaiting ? "tile-warn" : ""}">
          <div class="tile-label">Invoice requests waiting</div>
          <div class="tile-value"><span class="num">${fmtInt(sum.invoicesWaiting)}</span></div>
          <div class="muted small">${sum.invoicesWaiting ? "not answered by the tax platform yet" : "all answered"}</div>
        </div>` : ""}
        <div class="tile ${sum.openBreakers ? "tile-bad" : breakersOpen.length ? "tile-warn" : ""}">
          <div class="tile-label">Breakers</div>
          <div class="tile-value">${breakersOpen.length ? html`<span class="num">${fmtInt(breakersOpen.length)}</span> <span class="unit">not closed</span>` : "all closed"}</div>
          <div class="muted small">${breakersOpen.length ? breakersOpen.map(function (r) { return r.name + " (" + r.breaker.state + ")"; }).join(", ") : "partners answering"}</div>
        </div>`);

      var body = $("routes-body");
      if (state.pointerDown) return;
      if (selectionInside(body)) {
        $("routes-meta").textContent = "table paused while you select text";
        return;
      }
      var routes = (data.routes || []).slice().sort(function (a, b) {
        return (a.lane === "safety" ? 0 : 1) - (b.lane === "safety" ? 0 : 1);
      });
      $("routes-meta").textContent = "safety lane first · refreshes every 2 s · counts since the hub started";
      renderKeep(body, html`<table class="grid routes">
        <thead><tr><th scope="col">Route</th><th scope="col">Queue</th><th scope="col">Rate</th><th scope="col">Settled</th><th scope="col">Dead letters</th><th scope="col">Breaker</th><th scope="col">Last error</th></tr></thead>
        <tbody>${routes.map(routeRow)}</tbody></table>`);
      var jobs = data.jobs || [];
      render($("jobs"), jobs.length ? html`<h3>Scheduled jobs</h3><ul class="jobs">${jobs.map(function (j) {
        return html`<li><strong>${j.name}</strong> <span class="muted">next ${fmtTime(Date.parse(j.next_run) * 1000)} · ${plural(j.runs || 0, "run", "runs")} · ${plural(j.failures || 0, "failure", "failures")}${j.running ? " · running now" : ""}</span>${j.last_error ? html` <span class="err-text">${j.last_error}</span>` : ""}</li>`;
      })}</ul>` : html``);
      fillRouteFilter(routes);
      fillTypeList();
    }

    function fillRouteFilter(routes) {
      var sel = $("dl-route");
      var names = routes.map(function (r) { return r.name; }).sort();
      var have = Array.prototype.map.call(sel.options, function (o) { return o.value; }).slice(1);
      if (have.join("\n") === names.join("\n")) return;
      var current = state.dl.route;
      render(sel, html`<option value="">all routes</option>${names.map(function (n) { return html`<option value="${n}">${n}</option>`; })}`);
      sel.value = current;
    }

    function fillTypeList() {
      var types = Array.from(state.knownTypes).sort();
      render($("type-list"), html`${types.map(function (t) { return html`<option value="${t}"></option>`; })}`);
    }

    // ------------------------------------------------------------ paging

    function pagerHtml(kind, p) {
      var page = p.cursors.length;
      return html`<div class="pager">
        <button type="button" data-action="${kind}-newer" ${page === 1 ? html`disabled` : ""}>← Newer</button>
        <span class="muted">page ${fmtInt(page)}</span>
        <button type="button" data-action="${kind}-older" ${p.next ? "" : html`disabled`}>Older →</button>
      </div>`;
    }

    // ------------------------------------------------------------ dead letters

    function openDeadFor(route) {
      if (!route) return state.lastOpenDead || 0;
      var r = routeByName(route);
      return r ? r.dead_letters_open || 0 : 0;
    }

    /** More dead letters are open than when the list was loaded: an empty first page just reloads,
     * a list someone may be reading offers a refresh instead of jumping under their eyes. */
    function noticeNewDeadLetters() {
      var d = state.dl;
      if (d.baseline === null || d.loading || d.cursors.length !== 1 || d.status === "replayed") return;
      var n = openDeadFor(d.route) - d.baseline;
      if (n <= 0) { render($("dl-new"), html``); return; }
      if (d.items && !d.items.length && !d.error) { loadDeadLetters(); return; }
      render($("dl-new"), html`<button type="button" class="notice-btn" data-action="dl-refresh" data-key="dl-new">${plural(n, "more open dead letter", "more open dead letters")} since this list was loaded: refresh</button>`);
    }

    async function loadDeadLetters() {
      var d = state.dl;
      d.loading = true;
      drawDeadLetters();
      try {
        var data = await api("/ops/dead-letters", { query: { route: d.route, status: d.status, limit: 25, before: d.cursors[d.cursors.length - 1] } });
        d.items = data.items || [];
        d.next = data.next;
        d.error = null;
        d.baseline = openDeadFor(d.route);
      } catch (e) {
        if (e.status === 401) return;
        d.error = e;
        d.items = null;
      }
      d.loading = false;
      render($("dl-new"), html``);
      drawDeadLetters();
    }

    function drawDeadLetters() {
      var d = state.dl;
      $("dl-route").value = d.route;
      $("dl-status").value = d.status;
      var where = (d.route ? "route " + d.route : "all routes") + (d.status ? ", " + d.status : ", any status");
      $("dl-meta").textContent = d.loading ? "loading…" : where;
      var body = $("dl-body");
      if (d.error) { render(body, html`<p class="error-box">Could not load dead letters: ${d.error.message}</p>`); return; }
      if (!d.items) return;
      if (!d.items.length) {
        render(body, html`<p class="empty">${d.cursors.length > 1 ? "No older dead letters." : "No dead letters for " + where + ". Good."}</p>${d.cursors.length > 1 ? pagerHtml("dl", d) : ""}`);
        return;
      }
      var now = Date.now();
      render(body, html`<table class="grid dls">
        <thead><tr><th scope="col">When</th><th scope="col">Route</th><th scope="col">Type</th><th scope="col">Reason</th><th scope="col">Attempts</th><th scope="col">Status</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${d.items.map(function (x) {
          var open = x.status === "open";
          return html`<tr>
            <td data-label="When"><span class="ts">${fmtTime(x.dead_us)}</span><div class="muted small">${fmtAgo(x.dead_us, now)}</div></td>
            <td data-label="Route" class="nowrap"><strong>${x.route}</strong></td>
            <td data-label="Type"><code>${dotted(x.type || "—")}</code></td>
            <td data-label="Reason" class="reason-cell wide">${longText(x.reason, "dl:" + x.id, "err-text")}
              <details class="body"><summary>Message body (masked)${x.body_truncated ? " — truncated" : ""}</summary><pre>${JSON.stringify(x.body, null, 2)}</pre></details></td>
            <td data-label="Attempts" class="num">${fmtInt(x.attempts)}</td>
            <td data-label="Status">${open ? html`<span class="pill pill-bad">open</span>` : html`<span class="pill pill-done">${x.status}</span><div class="muted small">${fmtTime(x.replayed_us)}${x.replay_mapping_version ? " · mapping v" + x.replay_mapping_version : ""}</div>`}</td>
            <td data-label="Actions" class="actions wide-2">
              <button type="button" data-action="dry-run" data-id="${x.id}" data-route="${x.route}" ${open ? "" : html`disabled`}>Dry run</button>
              <button type="button" class="danger" data-action="replay" data-id="${x.id}" data-route="${x.route}" ${open ? "" : html`disabled`}>Replay…</button>
              <button type="button" class="ghost" data-action="trace" data-id="${x.message_id}">Trace</button>
            </td></tr>`;
        })}</tbody></table>${pagerHtml("dl", d)}`);
    }

    async function loadReconciliation() {
      var r = state.recon;
      r.loading = true;
      $("recon-meta").textContent = "loading…";
      try {
        var data = await api("/ops/reconciliation", { query: { items: 20 } });
        r.channels = data.channels || [];
        r.error = null;
      } catch (e) {
        if (e.status === 401) return;
        r.error = e;
      }
      r.loading = false;
      drawReconciliation();
    }

    function drawReconciliation() {
      var r = state.recon;
      var body = $("recon-body");
      $("recon-meta").textContent = r.channels ? "latest statement per channel" : "";
      if (r.error) { render(body, html`<p class="error-box">Could not load reconciliation: ${r.error.message}</p>`); return; }
      if (!r.channels) return;
      var sums = reconSummary(r.channels);
      var open = sums.reduce(function (n, s) { return n + s.open; }, 0);
      $("nav-recon-count").textContent = open ? " (" + fmtInt(open) + ")" : "";
      if (!r.channels.length) {
        render(body, html`<p class="empty">No statement imported yet: <code>gashub reconcile import --channel wechatpay --date YYYY-MM-DD FILE</code>.</p>`);
        return;
      }
      render(body, html`${r.channels.map(function (c, i) {
        var s = sums[i];
        var run = c.run;
        return html`<div class="recon-channel">
          <h3>${s.label} · statement of ${s.day} <span class="pill pill-${s.level}">${s.open ? fmtInt(s.open) + " open" : "matched"}</span></h3>
          <p>${s.headline}. ${fmtInt(run.lines)} lines, ${fmtInt(run.matched)} matched; imported ${run.imported_at} by ${run.imported_by} from <code>${run.file_name}</code>.</p>
          ${c.open_items.length ? html`<table class="grid recon">
            <thead><tr><th scope="col">What</th><th scope="col">Transaction</th><th scope="col">Statement</th><th scope="col">Hub</th><th scope="col">Detail</th></tr></thead>
            <tbody>${c.open_items.map(function (x) {
              var words = KIND_WORDS[x.kind] || [x.kind, ""];
              return html`<tr>
                <td data-label="What"><strong>${words[0]}</strong><div class="muted small">${words[1]}</div></td>
                <td data-label="Transaction"><code>${x.transaction_id}</code>${x.refund_id ? html`<div class="muted small">refund ${x.refund_id}</div>` : ""}</td>
                <td data-label="Statement" class="num">${x.statement_amount === null ? "—" : "¥" + x.statement_amount}<div class="muted small">${x.statement_status || ""}${x.line_no ? " · line " + x.line_no : ""}</div></td>
                <td data-label="Hub" class="num">${x.core_amount === null ? "—" : "¥" + x.core_amount}<div class="muted small">${x.core_status || ""}</div></td>
                <td data-label="Detail" class="wide">${x.detail}<div class="muted small">id ${x.id}</div></td></tr>`;
            })}</tbody></table>${s.open > c.open_items.length ? html`<p class="muted small">${fmtInt(s.open - c.open_items.length)} more: GET /api/v1/reconciliation/runs/${run.id}?status=open</p>` : ""}` : ""}
        </div>`;
      })}`);
    }

    function routeByName(name) {
      var routes = (state.routes && state.routes.routes) || [];
      for (var i = 0; i < routes.length; i++) if (routes[i].name === name) return routes[i];
      return null;
    }

    function openDryRun(id, routeName, opener) {
      state.opener = opener;
      var r = routeByName(routeName);
      var m = r ? parseMapping(r.mapping) : null;
      var dlg = $("dry-dialog");
      dlg.dataset.id = id;
      dlg.dataset.route = routeName;
      render($("dry-intro"), html`Dead letter <code>${id}</code> on route <strong>${routeName}</strong>. ${!r
        ? html`<span class="warn-text">This hub has no route of that name any more; the hub will refuse the replay.</span>`
        : m ? html`It is mapped by <strong>${m.name} v${m.version}</strong> now; give another version to compare, or leave it blank.`
          : html`This route has no mapping, so the dry run shows the message data as it is.`}`);
      var input = $("dry-version");
      input.value = "";
      input.disabled = !m;
      render($("dry-result"), html``);
      $("dry-replay").hidden = true;
      dlg.showModal();
      (m ? input : $("dry-run-btn")).focus();
    }

    function valueCell(v, missing, missingText) {
      if (missing) return html`<span class="muted">${missingText}</span>`;
      if (v === null || v === undefined) return html`<span class="muted">null</span>`;
      return html`<code>${typeof v === "string" ? v : JSON.stringify(v)}</code>`;
    }

    function side(label, s) {
      return html`<div class="side ${s.error ? "side-bad" : "side-ok"}">
        <div class="tile-label">${label}</div>
        <div><strong>${s.mapping || "no mapping"}</strong></div>
        ${s.error ? html`<div class="err-text">✗ ${s.error}</div>` : html`<div class="ok-text">✓ maps cleanly</div>`}
      </div>`;
    }

    async function runDryRun(ev) {
      ev.preventDefault();
      var dlg = $("dry-dialog");
      var raw = $("dry-version").value.trim();
      var body = { dry_run: true };
      if (raw && !$("dry-version").disabled) {
        if (!/^\d+$/.test(raw)) { render($("dry-result"), html`<p class="error-box">The mapping version is a whole number, such as 2.</p>`); return; }
        body.mapping_version = Number(raw);
      }
      render($("dry-result"), html`<p class="muted">Running…</p>`);
      try {
        var res = await api("/ops/dead-letters/" + encodeURIComponent(dlg.dataset.id) + "/replay", { method: "POST", body: body });
        var t = dryRunRows(res);
        var verdict = {
          changes: html`${plural(t.rows.length, "field changes", "fields change")} between the two mappings:`,
          fixed: html`The current mapping fails; the proposed one succeeds and gives these fields:`,
          broken: html`The proposed mapping fails where the current one succeeds. The current output is:`,
          "both-fail": html`Both fail: replaying now would dead-letter the message again.`,
          same: html`No difference: both give the same output.`,
        }[t.kind];
        render($("dry-result"), html`
          <p class="muted small">Reason it was dead-lettered: <span class="err-text">${res.reason}</span></p>
          <div class="sides">${side("Current", res.current || {})}${side("Proposed", res.proposed || {})}</div>
          <p class="verdict verdict-${t.kind}">${verdict}</p>
          ${t.rows.length ? html`<table class="grid diff"><thead><tr><th scope="col">Field</th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>${t.rows.map(function (row) {
            return html`<tr><td data-label="Field"><code>${row.field}</code></td><td data-label="Before" class="before">${valueCell(row.before, row.missingBefore, "— (fails now)")}</td><td data-label="After" class="after">${valueCell(row.after, row.missingAfter, "— (fails)")}</td></tr>`;
          })}</tbody></table>` : ""}`);
        var ok = !(res.proposed && res.proposed.error);
        var replayBtn = $("dry-replay");
        replayBtn.hidden = false;
        replayBtn.dataset.version = body.mapping_version === undefined ? "" : String(body.mapping_version);
        replayBtn.textContent = body.mapping_version === undefined ? "Replay…" : "Replay with mapping v" + body.mapping_version + "…";
        replayBtn.classList.toggle("danger", ok);
        replayBtn.title = ok ? "" : "The proposed mapping fails: the replay would most likely be dead-lettered again";
      } catch (e) {
        if (e.status === 401) { dlg.close(); return; }
        render($("dry-result"), html`<p class="error-box">${e.message}</p>`);
      }
    }

    function openConfirm(id, routeName, version, opener) {
      state.pending = { id: id, route: routeName, version: version };
      state.opener = opener || state.opener;
      render($("confirm-text"), html`Publish dead letter <code>${id}</code> again into route <strong>${routeName}</strong>,
        ${version ? html`through mapping version <strong>${version}</strong>` : "through the route's current mapping"}?
        It is replayed once and marked as replayed; the replay is recorded in the audit trail.`);
      var dlg = $("confirm-dialog");
      dlg.showModal();
      $("confirm-cancel").focus();
    }

    async function doReplay() {
      var p = state.pending;
      $("confirm-dialog").close();
      if (!p) return;
      state.pending = null;
      var body = { dry_run: false };
      if (p.version) body.mapping_version = Number(p.version);
      var notice = $("dl-notice");
      render(notice, html`<p class="muted">Replaying ${p.id}…</p>`);
      try {
        var res = await api("/ops/dead-letters/" + encodeURIComponent(p.id) + "/replay", { method: "POST", body: body });
        render(notice, res.replayed
          ? html`<p class="ok-box">Replayed dead letter <code>${res.dead_letter_id}</code>: message <code>${res.message_id}</code> is back on route <strong>${res.route}</strong>${res.mapping_version ? html` (mapping v${res.mapping_version})` : ""}. <button type="button" class="ghost" data-action="trace" data-id="${res.message_id}">Trace it</button></p>`
          : html`<p class="warn-box">Dead letter <code>${res.dead_letter_id}</code> was already replayed by someone else; nothing was sent.</p>`);
      } catch (e) {
        if (e.status === 401) return;
        render(notice, html`<p class="error-box">Replay of ${p.id} refused: ${e.message}</p>`);
      }
      await loadDeadLetters();
      refreshRoutes();
      focusHeading("dl-heading");
    }

    function focusHeading(id) {
      var h = $(id);
      if (h) h.focus({ preventScroll: false });
    }

    // ------------------------------------------------------------ messages

    function readMessageForm() {
      var q = {
        type: $("q-type").value.trim(),
        correlation_id: $("q-corr").value.trim(),
        limit: $("q-limit").value,
      };
      try {
        q.since = localInputToIso($("q-since").value);
        q.until = localInputToIso($("q-until").value);
      } catch (e) {
        return { error: "The time range needs a date and a time." };
      }
      return q;
    }

    async function loadMessages() {
      var s = state.msg;
      s.loading = true;
      $("msg-meta").textContent = "loading…";
      try {
        var data = await api("/ops/messages", { query: Object.assign({}, s.query, { before: s.cursors[s.cursors.length - 1] }) });
        s.items = data.items || [];
        s.next = data.next;
        s.error = null;
        s.items.forEach(function (m) { if (m.type) state.knownTypes.add(m.type); });
        fillTypeList();
      } catch (e) {
        if (e.status === 401) return;
        s.error = e;
        s.items = null;
      }
      s.loading = false;
      drawMessages();
    }

    function describeQuery(q) {
      var parts = [];
      if (q.type) parts.push("type " + q.type);
      if (q.correlation_id) parts.push("flow " + q.correlation_id);
      if (q.since) parts.push("from " + fmtTime(Date.parse(q.since) * 1000));
      if (q.until) parts.push("until " + fmtTime(Date.parse(q.until) * 1000));
      return parts.length ? parts.join(", ") : "latest messages";
    }

    function drawMessages() {
      var s = state.msg;
      $("msg-meta").textContent = describeQuery(s.query);
      var body = $("msg-body");
      if (s.error) { render(body, html`<p class="error-box">Could not search messages: ${s.error.message}</p>`); return; }
      if (!s.items) return;
      if (!s.items.length) {
        render(body, html`<p class="empty">${s.cursors.length > 1 ? "No older messages." : "No messages match."}</p>${s.cursors.length > 1 ? pagerHtml("msg", s) : ""}`);
        return;
      }
      render(body, html`<table class="grid msgs">
        <thead><tr><th scope="col">Time</th><th scope="col">Type</th><th scope="col">Source</th><th scope="col">Subject</th><th scope="col">Flow</th><th scope="col" class="num">Size</th><th scope="col"><span class="sr-only">Trace</span></th></tr></thead>
        <tbody>${s.items.map(function (m) {
          return html`<tr>
            <td data-label="Time" class="ts">${fmtTime(m.time_us)}</td>
            <td data-label="Type"><code>${dotted(m.type)}</code> <span class="muted small">v${m.version}</span></td>
            <td data-label="Source">${m.source}</td>
            <td data-label="Subject"><code>${m.subject || "—"}</code></td>
            <td data-label="Flow"><button type="button" class="link mono" data-action="by-flow" data-corr="${m.correlation_id}" title="Show every message of flow ${m.correlation_id}">…${shortId(m.correlation_id)}</button>${m.causation_id ? html` <span class="muted small">caused by …${shortId(m.causation_id)}</span>` : ""}</td>
            <td data-label="Size" class="num">${fmtBytes(m.size)}</td>
            <td data-label="Trace" class="actions"><button type="button" data-action="trace" data-id="${m.id}">Trace</button></td>
          </tr>`;
        })}</tbody></table>${pagerHtml("msg", s)}`);
    }

    function searchMessages(ev) {
      if (ev) ev.preventDefault();
      var q = readMessageForm();
      if (q.error) { render($("msg-body"), html`<p class="error-box">${q.error}</p>`); return; }
      state.msg.query = q;
      state.msg.cursors = [null];
      loadMessages();
    }

    function quickRange(minutes) {
      var now = new Date();
      $("q-since").value = toLocalInput(new Date(now.getTime() - minutes * 60000));
      $("q-until").value = "";
      searchMessages();
    }

    // ------------------------------------------------------------ trace

    async function openTrace(id) {
      var panel = $("trace");
      panel.hidden = false;
      $("trace-meta").textContent = "loading…";
      render($("trace-body"), html``);
      panel.scrollIntoView({ block: "start" });
      focusHeading("trace-heading");
      try {
        var t = await api("/ops/messages/" + encodeURIComponent(id) + "/trace");
        drawTrace(t);
        panel.scrollIntoView({ block: "start" });
      } catch (e) {
        if (e.status === 401) return;
        $("trace-meta").textContent = "";
        render($("trace-body"), html`<p class="error-box">${e.status === 404 ? "Nothing is stored for " + id + "." : e.message}</p>`);
      }
    }

    function drawTrace(t) {
      var groups = traceGroups(t);
      var times = [];
      groups.forEach(function (g) {
        if (isNum(g.first)) times.push(g.first);
        g.hops.forEach(function (h) { if (isNum(h.at_us)) times.push(h.at_us); });
      });
      var t0 = times.length ? Math.min.apply(null, times) : 0;
      var span = times.length ? Math.max.apply(null, times) - t0 : 0;
      var bad = (t.hops || []).filter(function (h) { return h.outcome === "dead" || h.outcome === "rejected"; }).length;
      var retries = (t.hops || []).filter(function (h) { return h.outcome === "retry"; }).length;
      $("trace-meta").textContent = plural((t.messages || []).length, "message", "messages") + " · " +
        plural((t.hops || []).length, "hop", "hops") + " · " + fmtDuration(span) + " from first to last" +
        (retries ? " · " + plural(retries, "retry", "retries") : "") +
        (bad ? " · dead-lettered or refused " + (bad === 1 ? "once" : fmtInt(bad) + " times") : "");
      function rel(us) { return isNum(us) ? "+" + fmtDuration(us - t0) : ""; }
      render($("trace-body"), html`
        <p class="small">Flow <code>${t.correlation_id}</code> <button type="button" class="link" data-action="by-flow" data-corr="${t.correlation_id}">list its messages</button></p>
        <ol class="timeline">${groups.map(function (g, gi) {
          var m = g.message;
          var here = m ? m.id === t.message_id : g.messageId === t.message_id;
          return html`<li class="tl-msg ${here ? "tl-here" : ""}">
            <div class="tl-node" aria-hidden="true"></div>
            <div class="tl-head">${m
              ? html`<strong><code>${m.type}</code></strong> <span class="muted small">v${m.version} · from ${m.source}${m.subject ? " · subject " + m.subject : ""}</span>`
              : html`<strong>Message not stored</strong> <span class="muted small">(only its hops were recorded)</span>`}
              ${here ? html`<span class="pill pill-lane">the one you picked</span>` : ""}</div>
            <div class="muted small mono">${m ? m.id : g.messageId}${m && m.causation_id ? html` · caused by …${shortId(m.causation_id)}` : ""} · ${fmtTime(g.first, true)} <span class="rel">${rel(g.first)}</span></div>
            ${m ? html`<details class="body"><summary>Body (masked) · ${fmtBytes(m.size)}</summary><pre>${JSON.stringify(m.body, null, 2)}</pre></details>` : ""}
            ${g.hops.length ? html`<ol class="hops">${g.hops.map(function (h) {
              return html`<li class="hop">
                <span class="pill oc-pill oc-${h.outcome}">${h.outcome}</span>
                <strong>${h.route}</strong>
                <span class="muted small">attempt ${h.attempt}${h.duration_us ? html` · <span class="num">${fmtDuration(h.duration_us)}</span>` : ""}${h.mapping_version ? " · mapping " + h.mapping_version : ""} · ${fmtTime(h.at_us, true)} <span class="rel">${rel(h.at_us)}</span></span>
                ${h.error ? html`<div class="hop-err ${FAILED.has(h.outcome) ? "err-text" : "muted"}">${h.error}</div>` : ""}
              </li>`;
            })}</ol>` : html`<p class="muted small">No hops recorded for this message.</p>`}
          </li>`;
        })}</ol>`);
    }

    // ------------------------------------------------------------ events

    function onClick(ev) {
      var t = ev.target.closest ? ev.target.closest("[data-action]") : null;
      if (!t || t.disabled) return;
      var a = t.getAttribute("data-action");
      if (a === "dl-route" || a === "dl-all") {
        ev.preventDefault();
        state.dl.route = a === "dl-route" ? t.getAttribute("data-route") : "";
        state.dl.status = "open";
        state.dl.cursors = [null];
        loadDeadLetters();
        $("deadletters").scrollIntoView({ block: "start" });
        focusHeading("dl-heading");
      } else if (a === "recon-refresh") {
        loadReconciliation();
      } else if (a === "dl-refresh") {
        state.dl.cursors = [null];
        loadDeadLetters();
      } else if (a === "dl-newer" || a === "dl-older" || a === "msg-newer" || a === "msg-older") {
        var kind = a.split("-")[0], p = kind === "dl" ? state.dl : state.msg;
        if (a.endsWith("older") && p.next) p.cursors.push(p.next);
        if (a.endsWith("newer") && p.cursors.length > 1) p.cursors.pop();
        (kind === "dl" ? loadDeadLetters : loadMessages)();
      } else if (a === "dry-run") {
        openDryRun(t.getAttribute("data-id"), t.getAttribute("data-route"), t);
      } else if (a === "replay") {
        openConfirm(t.getAttribute("data-id"), t.getAttribute("data-route"), "", t);
      } else if (a === "trace") {
        openTrace(t.getAttribute("data-id"));
      } else if (a === "by-flow") {
        $("q-corr").value = t.getAttribute("data-corr");
        $("q-type").value = "";
        $("q-since").value = "";
        $("q-until").value = "";
        searchMessages();
        $("messages").scrollIntoView({ block: "start" });
        focusHeading("msg-heading");
      } else if (a === "range") {
        quickRange(Number(t.getAttribute("data-minutes")));
      }
    }

    function restoreFocus() {
      var o = state.opener;
      state.opener = null;
      if (o && doc.body.contains(o)) o.focus();
      else focusHeading("dl-heading");
    }

    $("token-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var v = $("token-input").value.trim();
      if (!v) { $("token-input").focus(); return; }
      storeToken(v);
      connect();
    });
    $("forget").addEventListener("click", function () { askForToken(false); });
    doc.addEventListener("click", onClick);
    doc.addEventListener("pointerdown", function () { state.pointerDown = true; });
    doc.addEventListener("pointerup", function () { win.setTimeout(function () { state.pointerDown = false; }, 0); });
    doc.addEventListener("pointercancel", function () { state.pointerDown = false; });
    $("dl-route").addEventListener("change", function () { state.dl.route = this.value; state.dl.cursors = [null]; loadDeadLetters(); });
    $("dl-status").addEventListener("change", function () { state.dl.status = this.value; state.dl.cursors = [null]; loadDeadLetters(); });
    $("msg-form").addEventListener("submit", searchMessages);
    $("msg-clear").addEventListener("click", function () {
      ["q-type", "q-corr", "q-since", "q-until"].forEach(function (id) { $(id).value = ""; });
      searchMessages();
    });
    $("dry-form").addEventListener("submit", runDryRun);
    $("dry-close").addEventListener("click", function () { $("dry-dialog").close(); });
    $("dry-replay").addEventListener("click", function () {
      var dlg = $("dry-dialog");
      var version = this.dataset.version;
      dlg.close();
      openConfirm(dlg.dataset.id, dlg.dataset.route, version, null);
    });
    $("dry-dialog").addEventListener("close", function () { if (!state.pending) restoreFocus(); });
    $("confirm-cancel").addEventListener("click", function () { state.pending = null; $("confirm-dialog").close(); });
    $("confirm-ok").addEventListener("click", doReplay);
    $("confirm-dialog").addEventListener("close", function () { if (state.pending) { state.pending = null; } restoreFocus(); });
    $("trace-close").addEventListener("click", function () { $("trace").hidden = true; focusHeading("msg-heading"); });
    doc.addEventListener("visibilitychange", function () { if (!doc.hidden && state.token) refreshRoutes(); });

    var fromFragment = readFragmentToken();
    if (fromFragment) storeToken(fromFragment);
    else {
      try { state.token = win.sessionStorage.getItem(TOKEN_KEY); } catch (e) { state.token = null; }
    }
    if (state.token) connect();
    else askForToken(false);
  }

  return {
    esc: esc, html: html, render: render, SafeHtml: SafeHtml,
    fmtInt: fmtInt, fmtRate: fmtRate, fmtTime: fmtTime, fmtDuration: fmtDuration, fmtAgo: fmtAgo,
    plural: plural, localInputToIso: localInputToIso, toLocalInput: toLocalInput, parseMapping: parseMapping,
    summarize: summarize, reconSummary: reconSummary, sparkPoints: sparkPoints, flatten: flatten, dryRunRows: dryRunRows, traceGroups: traceGroups,
    start: start,
  };
});
