// The audit view: plain DOM, no framework. Every data request carries the query token the
// user entered (kept in this tab's sessionStorage; `#token=` in the URL also works and never
// reaches a server or a log). Text from events is inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
let cursor = null;

function token() {
  return $("token").value.trim();
}

function setStatus(text) {
  $("status").textContent = text;
}

async function api(path) {
  const response = await fetch(path, { headers: { authorization: "Bearer " + token() } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error || response.status + " " + response.statusText);
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  }
  return node;
}

function pill(text, kind) {
  return el("span", { class: "pill " + (kind || text) }, text);
}

function outcomeKind(outcome) {
  if (outcome === "ok" || outcome === "accepted" || outcome === "client_closed") return "ok";
  if (!outcome) return "";
  return outcome === "canceled" || outcome === "not_inspected" ? "warn" : "bad";
}

function toRfc3339(local) {
  // datetime-local values are read as UTC, like every time on this page.
  return local ? local + (local.length === 16 ? ":00Z" : "Z") : "";
}

async function search(older) {
  const params = new URLSearchParams();
  const fields = { trace_id: "f-trace", instance_id: "f-instance", tool: "f-tool",
                   event: "f-event", outcome: "f-outcome" };
  for (const [key, id] of Object.entries(fields)) {
    const v = $(id).value.trim();
    if (v) params.set(key, v);
  }
  const since = toRfc3339($("f-since").value), until = toRfc3339($("f-until").value);
  if (since) params.set("since", since);
  if (until) params.set("until", until);
  params.set("limit", "50");
  if (older && cursor) params.set("cursor", cursor);
  setStatus("searching…");
  try {
    const page = await api("/v1/logs?" + params);
    const body = $("results").tBodies[0];
    if (!older) body.replaceChildren();
    for (const item of page.items) body.append(resultRow(item));
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    setStatus(body.rows.length + " events");
  } catch (e) {
    setStatus("search failed: " + e.message);
  }
}

function resultRow(item) {
  const log = typeof item.log === "object" && item.log ? item.log : {};
  const outcome = log["mcp.outcome"];
  const trace = item.trace_id
    ? el("a", { class: "trace mono", "data-trace": item.trace_id,
                onclick: () => openTrace(item.trace_id) }, item.trace_id)
    : "";
  return el("tr", {},
    el("td", { class: "mono" }, item.created_at.replace("T", " ").replace("Z", "")),
    el("td", {}, item.event),
    el("td", {}, item.instance_id || ""),
    el("td", {}, item.mcp_method || ""),
    el("td", {}, item.tool_name || ""),
    el("td", {}, outcome ? pill(outcome, outcomeKind(outcome)) : ""),
    el("td", { class: "num" }, log.duration_ms == null ? "" : Number(log.duration_ms).toFixed(1)),
    el("td", {}, trace));
}

async function openTrace(traceId) {
  setStatus("loading trace…");
  try {
    const page = await api("/v1/logs?limit=1000&trace_id=" + encodeURIComponent(traceId));
    renderTimeline(traceId, page.items.slice().reverse());
    setStatus(page.items.length + " events in trace");
  } catch (e) {
    setStatus("trace failed: " + e.message);
  }
}

function micros(rfc3339) {
  // "2026-11-22T10:00:01.123456Z": Date keeps milliseconds, the rest is added by hand.
  const ms = Date.parse(rfc3339);
  const frac = /\.(\d{3})(\d{3})/.exec(rfc3339);
  return ms * 1000 + (frac ? Number(frac[2]) : 0);
}

function renderTimeline(traceId, items) {
  $("trace-panel").hidden = false;
  $("trace-id").textContent = traceId;
  const rows = items.map((item) => {
    const log = typeof item.log === "object" && item.log ? item.log : {};
    const end = micros(item.created_at);
    const took = log.duration_ms == null ? null : Number(log.duration_ms) * 1000;
    return { item, log, end, start: took == null ? end : end - took, took };
  });
  const t0 = Math.min(...rows.map((r) => r.start));
  const t1 = Math.max(...rows.map((r) => r.end), t0 + 1);
  const pct = (t) => ((t - t0) / (t1 - t0)) * 100;
  const box = $("timeline");
  box.replaceChildren(el("div", { class: "timeline-row muted" }, el("span", {}, "event"),
    el("span", {}, "0 – " + ((t1 - t0) / 1000).toFixed(1) + " ms"), el("span", {}, "ms")));
  for (const r of rows) {
    const label = [r.item.event, r.item.mcp_method, r.item.tool_name].filter(Boolean).join(" · ");
    const track = el("div", { class: "track" });
    if (r.took != null) {
      const failed = outcomeKind(r.log["mcp.outcome"]) === "bad";
      const bar = el("div", { class: "bar" + (failed ? " err" : "") });
      bar.style.left = pct(r.start) + "%";
      bar.style.width = Math.max(pct(r.end) - pct(r.start), 0.3) + "%";
      track.append(bar);
    } else {
      const mark = el("div", { class: "mark " + r.item.level });
      mark.style.left = pct(r.end) + "%";
      track.append(mark);
    }
    box.append(el("div", { class: "timeline-row", "data-event": r.item.event,
                           onclick: () => showDetail(r.item) },
      el("span", { class: "mono" }, label),
      track,
      el("span", { class: "mono num" }, r.took == null ? "" : (r.took / 1000).toFixed(1))));
  }
}

function showDetail(item) {
  const pre = $("event-detail");
  pre.hidden = false;
  pre.textContent = JSON.stringify(item, null, 2);
}

async function loadAccounting() {
  try {
    const report = await api("/v1/accounting");
    const table = el("table", {}, el("tr", {}, ...["source", "events", "gaps", "duplicates",
      "filter dropped", "emitted", "unaccounted"].map((h) => el("th", {}, h))));
    const sum = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
    for (const s of report.sources) {
      const lost = s.unaccounted == null ? "–" : s.unaccounted;
      table.append(el("tr", {},
        el("td", { class: "mono" }, s.source), el("td", { class: "num" }, s.events),
        el("td", { class: "num" }, s.gaps), el("td", { class: "num" }, s.duplicates),
        el("td", { class: "num" }, sum(s.filter_dropped)), el("td", { class: "num" }, s.emitted ?? "–"),
        el("td", { class: "num" }, s.unaccounted ? pill(String(lost), "bad") : lost)));
    }
    const t = report.totals;
    table.append(el("tr", {}, el("th", {}, "total (" + t.sources + ")"), el("th", { class: "num" }, t.events),
      el("th", { class: "num" }, t.gaps), el("th", { class: "num" }, t.duplicates),
      el("th", { class: "num" }, sum(t.filter_dropped)), el("th", { class: "num" }, t.emitted),
      el("th", { class: "num" }, t.unaccounted)));
    $("accounting").replaceChildren(table);
  } catch (e) {
    $("accounting").textContent = "unavailable: " + e.message;
  }
}

async function loadUpstreams() {
  try {
    const answer = await api("/v1/upstreams");
    const upstreams = (answer.health && answer.health.upstreams) || [];
    if (!upstreams.length) {
      $("upstreams").textContent = "no upstream has been used yet";
      return;
    }
    const wanted = ["instance", "healthy", "state", "successes", "failures",
                    "consecutive_failures", "p50_ms", "p95_ms", "p99_ms", "last_failure"];
    const keys = wanted.filter((k) => k in upstreams[0]);
    const table = el("table", {}, el("tr", {}, ...keys.map((k) => el("th", {}, k.replaceAll("_", " ")))));
    for (const u of upstreams) {
      table.append(el("tr", {}, ...keys.map((k) => {
        const v = u[k];
        if (k === "healthy") return el("td", {}, pill(v ? "healthy" : "unhealthy"));
        if (k === "state" || k === "breaker") return el("td", {}, pill(String(v)));
        return el("td", { class: typeof v === "number" ? "num" : "" }, v);
      })));
    }
    $("upstreams").replaceChildren(table);
  } catch (e) {
    $("upstreams").textContent = "unavailable: " + e.message;
  }
}

function load() {
  sessionStorage.setItem("mcp-audit-token", token());
  loadUpstreams();
  loadAccounting();
  search(false);
}

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  $("token").value = fromHash ? decodeURIComponent(fromHash[1])
                              : sessionStorage.getItem("mcp-audit-token") || "";
  if (fromHash) history.replaceState(null, "", location.pathname);
  $("connect").addEventListener("click", load);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  if (token()) load();
});
