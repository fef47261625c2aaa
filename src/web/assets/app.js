// rdbvault web UI: plain JavaScript, no dependencies, no build step.
"use strict";

const state = { csrf: "", repo: "default", snapshots: [], jobsTimer: null };
const $ = (sel) => document.querySelector(sel);

// Builds an element; text is always set as text, never parsed as HTML.
function h(tag, attrs, ...children) {
  const svg = ["svg", "rect", "line", "polyline", "text", "g", "circle", "path", "title"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
const when = (t) => (t || "").replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC");
const ratio = (r) => (r === null || r === undefined ? "–" : r.toFixed(2) + "×");
const ttl = (ms) => (ms === null || ms === undefined ? "–" : ms < 0 ? "expired" : ms < 120000 ? Math.round(ms / 1000) + " s" : ms < 7200000 ? Math.round(ms / 60000) + " min" : Math.round(ms / 3600000) + " h");

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 6000);
}

async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", headers: {}, credentials: "same-origin" };
  if (init.method !== "GET") init.headers["X-CSRF-Token"] = state.csrf;
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (res.status === 401) showLogin();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
const repoPath = (p) => `/api/repos/${encodeURIComponent(state.repo)}${p}`;

function showLogin() { $("#login").hidden = false; $("#login-password").focus(); }

async function startSession() {
  const s = await api("/api/session");
  state.csrf = s.csrf;
  $("#logout").hidden = !(s.auth_required && s.logged_in);
  if (s.auth_required && !s.logged_in) { showLogin(); return false; }
  return true;
}

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const r = await api("/api/login", { method: "POST", body: { password: $("#login-password").value } });
    state.csrf = r.csrf;
    $("#login").hidden = true;
    $("#login-password").value = "";
    $("#login-error").textContent = "";
    await boot();
  } catch (err) { $("#login-error").textContent = err.message; }
});
$("#logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }).catch(() => {}); location.reload(); });

// ---- charts (inline SVG) ----

function timeChart(snaps) {
  const W = 900, H = 180, L = 64, R = 12, T = 12, B = 26;
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "snapshot size and added bytes over time" });
  if (!snaps.length) return svg;
  const xs = snaps.map((s) => Date.parse(s.time));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), span = x1 - x0 || 1;
  const top = Math.max(1, ...snaps.map((s) => Math.max(s.size, s.bytes_added)));
  const x = (t) => L + ((t - x0) / span) * (W - L - R) * (snaps.length > 1 ? 1 : 0) + (snaps.length > 1 ? 0 : (W - L - R) / 2);
  const y = (v) => H - B - (v / top) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    svg.append(h("line", { x1: L, x2: W - R, y1: y(top * f), y2: y(top * f), stroke: "#e3e3df" }));
    svg.append(h("text", { x: L - 6, y: y(top * f) + 4, "text-anchor": "end", text: bytes(Math.round(top * f)) }));
  }
  const bw = Math.max(3, Math.min(18, (W - L - R) / snaps.length / 2));
  snaps.forEach((s, i) => {
    const bar = h("rect", { x: x(xs[i]) - bw / 2, y: y(s.bytes_added), width: bw, height: Math.max(1, H - B - y(s.bytes_added)), fill: "#8fbf9f" });
    bar.append(h("title", { text: `${s.short_id} ${when(s.time)}: added ${bytes(s.bytes_added)}` }));
    svg.append(bar);
  });
  svg.append(h("polyline", { points: snaps.map((s, i) => `${x(xs[i])},${y(s.size)}`).join(" "), fill: "none", stroke: "#2f6f9f", "stroke-width": 2 }));
  snaps.forEach((s, i) => {
    const dot = h("circle", { cx: x(xs[i]), cy: y(s.size), r: 3.5, fill: "#2f6f9f" });
    dot.append(h("title", { text: `${s.short_id} ${when(s.time)}: ${bytes(s.size)}` }));
    svg.append(dot);
  });
  svg.append(h("text", { x: L, y: H - 6, text: when(snaps[0].time) }));
  if (snaps.length > 1) svg.append(h("text", { x: W - R, y: H - 6, "text-anchor": "end", text: when(snaps[snaps.length - 1].time) }));
  return svg;
}

function barChart(entries, label) {
  const rows = entries.slice(0, 12), W = 520, rowH = 22, L = 150;
  const H = rows.length * rowH + 6;
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  const top = Math.max(1, ...rows.map((r) => r.bytes));
  rows.forEach((r, i) => {
    const yy = i * rowH + 4;
    svg.append(h("text", { x: L - 8, y: yy + 13, "text-anchor": "end", text: r.name.length > 22 ? r.name.slice(0, 21) + "…" : r.name }));
    const w = Math.max(1, ((W - L - 90) * r.bytes) / top);
    const bar = h("rect", { x: L, y: yy, width: w, height: rowH - 6, rx: 3, fill: "#2f6f9f" });
    bar.append(h("title", { text: `${r.name}: ${bytes(r.bytes)} in ${r.keys} keys` }));
    svg.append(bar);
    svg.append(h("text", { x: L + w + 6, y: yy + 13, text: `${bytes(r.bytes)} · ${r.keys}` }));
  });
  return svg;
}

// ---- views ----

function snapshotSelect(id, value) {
  const sel = h("select", { id });
  for (const s of [...state.snapshots].reverse()) sel.append(h("option", { value: s.id, selected: s.id === value, text: `${s.short_id}  ${when(s.time)}  ${s.source.name}` }));
  return sel;
}

async function loadSnapshots() {
  const r = await api(repoPath("/snapshots"));
  state.snapshots = r.snapshots;
  return r;
}

async function viewSnapshots(main) {
  const r = await loadSnapshots();
  const snaps = r.snapshots;
  main.append(h("div", { class: "card" },
    h("h2", { text: "Size and added bytes over time" }),
    h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch size" }), "snapshot size"), h("span", {}, h("span", { class: "swatch added-bg" }), "bytes added to the repository")),
    timeChart(snaps)));
  const tbody = h("tbody");
  for (const s of [...snaps].reverse()) {
    tbody.append(h("tr", { "data-id": s.id },
      h("td", {}, h("code", { text: s.short_id })),
      h("td", { text: when(s.time) }),
      h("td", {}, s.source.kind + " ", h("span", { class: "muted", text: s.source.name })),
      h("td", {}, s.tags.map((t) => h("span", { class: "tag", text: t }))),
      h("td", { class: "num", text: s.keys ?? "–" }),
      h("td", { class: "num", text: bytes(s.size) }),
      h("td", { class: "num", text: bytes(s.bytes_added) }),
      h("td", { class: "num", text: ratio(s.dedup_ratio) }),
      h("td", { class: "num", text: ratio(s.compression_ratio) }),
      h("td", {},
        h("a", { href: `#/keys/${s.id}`, text: "keys" }), " · ",
        h("a", { href: `#/memory/${s.id}`, text: "memory" }), " · ",
        h("a", { href: repoPath(`/snapshots/${s.id}/rdb`), download: "", text: "RDB" }), " · ",
        h("a", { href: `#/jobs/restore/${s.id}`, text: "restore" }))));
  }
  main.append(h("div", { class: "card" },
    h("h2", { text: `${snaps.length} snapshot${snaps.length === 1 ? "" : "s"}` }),
    r.unreadable.length ? h("p", { class: "error", text: `${r.unreadable.length} unreadable: ${r.unreadable.join("; ")}` }) : null,
    h("table", { id: "snapshots" },
      h("thead", {}, h("tr", {}, ["ID", "Time", "Source", "Tags"].map((t) => h("th", { text: t })), ["Keys", "Size", "Added", "Dedup", "Compression"].map((t) => h("th", { class: "num", text: t })), h("th", { text: "" }))),
      tbody)));
}

function valueView(v) {
  const box = h("div", { class: "value", id: "value" });
  box.append(h("h3", {}, h("code", { text: v.key })));
  box.append(h("dl", { class: "kv" },
    h("dt", { text: "type" }), h("dd", { text: `${v.type} (${v.encoding})` }),
    h("dt", { text: "db" }), h("dd", { text: v.db }),
    h("dt", { text: "TTL at snapshot" }), h("dd", { text: ttl(v.ttl_ms) }),
    h("dt", { text: "memory" }), h("dd", { text: bytes(v.approx_memory) })));
  const val = v.value;
  const table = (head, rows) => h("table", {}, h("thead", {}, h("tr", {}, head.map((t) => h("th", { text: t })))), h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, h("code", { text: typeof c === "string" ? c : JSON.stringify(c) })))))));
  if (typeof val === "string") box.append(h("pre", { id: "value-text", text: val }));
  else if (v.type === "hash" && Array.isArray(val)) box.append(table(["field", "value"], val.map((e) => [e.field, e.value])));
  else if (v.type === "zset" && Array.isArray(val)) box.append(table(["member", "score"], val.map((e) => [e.member, e.score])));
  else if (Array.isArray(val)) box.append(table(["#", v.type === "set" ? "member" : "element"], val.map((e, i) => [String(i), e])));
  else box.append(h("pre", { text: JSON.stringify(val, null, 2) }));
  return box;
}

async function viewKeys(main, arg) {
  await loadSnapshots();
  if (!state.snapshots.length) { main.append(h("p", { class: "muted", text: "No snapshots yet." })); return; }
  const snap = arg || state.snapshots[state.snapshots.length - 1].id;
  const form = h("form", { class: "row", id: "key-search" },
    h("label", {}, "snapshot", snapshotSelect("key-snap", snap)),
    h("label", {}, "pattern", h("input", { id: "key-pattern", placeholder: "user:*", size: 24 })),
    h("label", {}, "type", h("select", { id: "key-type" }, ["", "string", "list", "set", "zset", "hash", "stream", "module"].map((t) => h("option", { value: t, text: t || "any" })))),
    h("label", {}, "db", h("input", { id: "key-db", size: 3, inputmode: "numeric" })),
    h("button", { type: "submit", text: "Search" }));
  const list = h("div", { class: "card" }, h("p", { class: "muted", text: "Searching…" }));
  const detail = h("div", { class: "card" }, h("p", { class: "muted", text: "Pick a key to see its value." }));
  main.append(h("div", { class: "card" }, h("h2", { text: "Key browser" }), form), h("div", { class: "split" }, list, detail));
  let cursor = "";
  const load = async (append) => {
    const q = new URLSearchParams({ limit: 100 });
    if (append && cursor) q.set("cursor", cursor);
    for (const [k, id] of [["pattern", "#key-pattern"], ["type", "#key-type"], ["db", "#key-db"]]) if ($(id).value) q.set(k, $(id).value);
    const snapId = $("#key-snap").value;
    try {
      const r = await api(repoPath(`/snapshots/${snapId}/keys?${q}`));
      if (!append) list.replaceChildren(h("table", { id: "keys" }, h("thead", {}, h("tr", {}, ["db", "key", "type", "TTL", "memory"].map((t) => h("th", { text: t })))), h("tbody")));
      const tbody = list.querySelector("tbody");
      for (const k of r.keys) {
        const tr = h("tr", { class: "pick", "data-key": k.key },
          h("td", { text: k.db }), h("td", {}, h("code", { text: k.key })), h("td", { text: k.type }), h("td", { text: ttl(k.ttl_ms) }), h("td", { class: "num", text: bytes(k.approx_memory) }));
        tr.addEventListener("click", async () => {
          list.querySelectorAll("tr.sel").forEach((x) => x.classList.remove("sel"));
          tr.classList.add("sel");
          try {
            const v = await api(repoPath(`/snapshots/${snapId}/key?` + new URLSearchParams({ db: k.db, key: k.key })));
            detail.replaceChildren(valueView(v));
          } catch (err) { detail.replaceChildren(h("p", { class: "error", text: err.message })); }
        });
        tbody.append(tr);
      }
      list.querySelector("#more")?.remove();
      if (!r.keys.length && !append) list.append(h("p", { class: "muted", text: "No key matches." }));
      if (r.next_cursor !== null) {
        cursor = r.next_cursor;
        list.append(h("button", { id: "more", class: "secondary", onclick: () => load(true), text: "More keys" }));
      }
    } catch (err) { list.replaceChildren(h("p", { class: "error", text: err.message })); }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); cursor = ""; load(false); });
  load(false);
}

async function viewMemory(main, arg) {
  await loadSnapshots();
  if (!state.snapshots.length) { main.append(h("p", { class: "muted", text: "No snapshots yet." })); return; }
  const snap = arg || state.snapshots[state.snapshots.length - 1].id;
  const out = h("div", {}, h("p", { class: "muted", text: "Reading the snapshot…" }));
  const form = h("form", { class: "row" }, h("label", {}, "snapshot", snapshotSelect("mem-snap", snap)), h("button", { type: "submit", text: "Report" }));
  main.append(h("div", { class: "card" }, h("h2", { text: "Memory report" }), form), out);
  const load = async () => {
    try {
      const r = await api(repoPath(`/snapshots/${$("#mem-snap").value}/memory?top=20`));
      const entries = (m) => Object.entries(m).map(([name, b]) => ({ name: name || "(no prefix)", ...b })).sort((a, b) => b.bytes - a.bytes);
      out.replaceChildren(
        h("div", { class: "card" }, h("p", {}, `${r.total.keys} keys, about ${bytes(r.total.bytes)} in memory`)),
        h("div", { class: "split" },
          h("div", { class: "card" }, h("h3", { text: "By key prefix" }), barChart(entries(r.by_prefix), "memory by key prefix")),
          h("div", { class: "card" }, h("h3", { text: "By type" }), barChart(entries(r.by_type), "memory by type"))),
        h("div", { class: "card" }, h("h3", { text: "Largest keys" }),
          h("table", {}, h("thead", {}, h("tr", {}, ["db", "key", "type", "encoding"].map((t) => h("th", { text: t })), h("th", { class: "num", text: "memory" }))),
            h("tbody", {}, r.top.map((k) => h("tr", {}, h("td", { text: k.db }), h("td", {}, h("code", { text: k.key })), h("td", { text: k.type }), h("td", { text: k.encoding }), h("td", { class: "num", text: bytes(k.approx_memory) })))))));
    } catch (err) { out.replaceChildren(h("p", { class: "error", text: err.message })); }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
}

async function viewDiff(main) {
  await loadSnapshots();
  if (state.snapshots.length < 1) { main.append(h("p", { class: "muted", text: "No snapshots yet." })); return; }
  const n = state.snapshots.length;
  const form = h("form", { class: "row", id: "diff-form" },
    h("label", {}, "older", snapshotSelect("diff-old", state.snapshots[Math.max(0, n - 2)].id)),
    h("label", {}, "newer", snapshotSelect("diff-new", state.snapshots[n - 1].id)),
    h("label", {}, "pattern", h("input", { id: "diff-pattern", placeholder: "*", size: 18 })),
    h("button", { type: "submit", text: "Compare" }));
  const out = h("div", { class: "card" }, h("p", { class: "muted", text: "Pick two snapshots and compare." }));
  const detail = h("div", { class: "card" }, h("p", { class: "muted", text: "Pick a changed key to see both values." }));
  main.append(h("div", { class: "card" }, h("h2", { text: "Diff" }), form), h("div", { class: "split" }, out, detail));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    out.replaceChildren(h("p", { class: "muted", text: "Comparing…" }));
    const oldId = $("#diff-old").value, newId = $("#diff-new").value;
    const q = new URLSearchParams({ old: oldId, new: newId });
    if ($("#diff-pattern").value) q.set("pattern", $("#diff-pattern").value);
    try {
      const r = await api(repoPath(`/diff?${q}`));
      const c = r.counts;
      out.replaceChildren(
        h("p", { id: "diff-counts" }, h("span", { class: "added", text: `${c.added} added` }), ", ", h("span", { class: "removed", text: `${c.removed} removed` }), ", ", h("span", { class: "changed", text: `${c.changed} changed` }), `, ${c.unchanged} unchanged`),
        r.truncated ? h("p", { class: "muted", text: "Only the first changes are listed." }) : "",
        h("table", { id: "changes" }, h("thead", {}, h("tr", {}, ["", "db", "key", "what"].map((t) => h("th", { text: t })))),
          h("tbody", {}, r.changes.map((ch) => {
            const tr = h("tr", { class: "pick", "data-key": ch.key },
              h("td", { class: ch.kind, text: { added: "+", removed: "−", changed: "~", reencoded: "=" }[ch.kind] }),
              h("td", { text: ch.key.length >= 0 ? ch.db : "" }), h("td", {}, h("code", { text: ch.key })), h("td", { class: "muted", text: ch.what.join(", ") || ch.kind }));
            tr.addEventListener("click", async () => {
              const get = (id) => api(repoPath(`/snapshots/${id}/key?` + new URLSearchParams({ db: ch.db, key: ch.key }))).then(valueView, () => h("p", { class: "muted", text: "(not in this snapshot)" }));
              const [a, b] = await Promise.all([get(oldId), get(newId)]);
              detail.replaceChildren(h("h3", { text: "older" }), a, h("h3", { text: "newer" }), b);
            });
            return tr;
          }))));
    } catch (err) { out.replaceChildren(h("p", { class: "error", text: err.message })); }
  });
}

async function viewTimeline(main) {
  const r = await api(repoPath("/timeline"));
  if (!r.servers.length) {
    main.append(h("div", { class: "card" }, h("h2", { text: "Point-in-time recovery" }), h("p", { class: "muted", text: "No followed server: `rdbvault follow redis://…` records a server's write stream for restores to any moment." })));
    return;
  }
  for (const s of r.servers) {
    const spans = s.chains.map((c) => [c.from_ms, c.to_ms]);
    const lo = Math.min(...spans.map((x) => x[0])), hi = Math.max(...spans.map((x) => x[1])), W = 900, span = hi - lo || 1;
    const x = (t) => 10 + ((t - lo) / span) * (W - 20);
    const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} 60` });
    for (const c of s.chains) {
      const bar = h("rect", { x: x(c.from_ms), y: 12, width: Math.max(2, x(c.to_ms) - x(c.from_ms)), height: 18, rx: 3, fill: "#2f6f9f" });
      bar.append(h("title", { text: `restorable ${new Date(c.from_ms).toISOString()} – ${new Date(c.to_ms).toISOString()} (${c.segments} segments, ${bytes(c.log_bytes)})` }));
      svg.append(bar);
    }
    for (const g of s.gaps) svg.append(h("rect", { x: x(g.from_ms), y: 12, width: Math.max(2, x(g.to_ms) - x(g.from_ms)), height: 18, fill: "#b3403a", opacity: 0.35 }));
    svg.append(h("text", { x: 10, y: 50, text: new Date(lo).toISOString() }), h("text", { x: W - 10, y: 50, "text-anchor": "end", text: new Date(hi).toISOString() }));
    main.append(h("div", { class: "card" }, h("h2", { text: `Log of ${s.server}` }), svg,
      h("p", { class: "muted", text: `${s.chains.length} restorable range(s), ${s.gaps.length} gap(s)` })));
  }
}

function jobRow(j) {
  const pct = j.bytes_total ? Math.min(100, (100 * j.bytes_done) / j.bytes_total) : j.state === "succeeded" ? 100 : 0;
  const bar = h("div", { class: "progress" }, h("div"));
  bar.firstChild.style.width = pct + "%";
  const running = j.state === "running" || j.state === "queued";
  return h("tr", { "data-job": j.id },
    h("td", {}, h("code", { text: j.id })), h("td", { text: j.kind }), h("td", { class: j.state === "failed" ? "removed" : j.state === "succeeded" ? "added" : "", text: j.state }),
    h("td", {}, bar), h("td", { text: j.started_ms ? new Date(j.started_ms).toLocaleString() : "" }),
    h("td", { class: "muted", text: j.message || "" }),
    h("td", {}, running ? h("button", { class: "secondary", onclick: () => api(`/api/jobs/${j.id}/cancel`, { method: "POST" }).then(() => toast("cancel requested"), (e) => toast(e.message)), text: "Cancel" }) : null));
}

async function viewJobs(main, arg, arg2) {
  await loadSnapshots();
  const start = (body) => api("/api/jobs", { method: "POST", body: { repo: state.repo, ...body } }).then((j) => { toast(`job ${j.id} started`); return j; }, (e) => { toast(e.message); throw e; });
  main.append(h("div", { class: "card" }, h("h2", { text: "Actions" }),
    h("div", { class: "row" },
      h("button", { onclick: () => start({ kind: "backup" }).catch(() => {}), text: "Back up now" }),
      h("button", { class: "secondary", onclick: () => start({ kind: "check" }).catch(() => {}), text: "Check" }),
      h("button", { class: "secondary", onclick: () => start({ kind: "forget" }).catch(() => {}), text: "Forget (policy)" }),
      h("button", { class: "secondary", onclick: () => start({ kind: "prune" }).catch(() => {}), text: "Prune" }))));
  const snap = arg === "restore" && arg2 ? arg2 : state.snapshots.length ? state.snapshots[state.snapshots.length - 1].id : "";
  const report = h("div", { id: "restore-report" });
  const form = h("form", { class: "row", id: "restore-form" },
    h("label", {}, "snapshot", snapshotSelect("restore-snap", snap)),
    h("label", {}, "keys (pattern)", h("input", { id: "restore-keys", placeholder: "*", size: 18 })),
    h("label", {}, "into Redis URL", h("input", { id: "restore-to", placeholder: "redis://127.0.0.1:6379/0", size: 32, required: true })),
    h("label", {}, "map dbs", h("input", { id: "restore-map-db", placeholder: "0:3,1:4", size: 10 })),
    h("label", {}, "keys that exist", h("select", { id: "restore-existing" },
      h("option", { value: "", text: "stop the restore" }), h("option", { value: "replace", text: "replace them" }), h("option", { value: "skip", text: "keep them (skip)" }))),
    h("button", { type: "submit", text: "Dry run" }));
  const body = () => ({
    kind: "restore", snapshot: $("#restore-snap").value, keys: $("#restore-keys").value || null, to_url: $("#restore-to").value,
    map_db: $("#restore-map-db").value || null, replace: $("#restore-existing").value === "replace", skip_existing: $("#restore-existing").value === "skip",
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    report.replaceChildren(h("p", { class: "muted", text: "Dry run…" }));
    try {
      const dry = await waitJob(await start({ ...body(), dry_run: true }));
      if (dry.state !== "succeeded") { report.replaceChildren(h("p", { class: "error", text: `dry run ${dry.state}: ${dry.message}` })); return; }
      const go = h("button", { class: "danger", id: "restore-confirm", text: "Restore now" });
      go.addEventListener("click", async () => {
        go.disabled = true;
        const done = await waitJob(await start({ ...body(), dry_run: false, confirm: dry.id }).catch((e) => ({ id: null, state: "refused", message: e.message })));
        report.append(h("p", { id: "restore-done", class: done.state === "succeeded" ? "added" : "error", text: `restore ${done.state}: ${done.message || ""}` }));
        refresh();
      });
      report.replaceChildren(h("div", { class: "confirm" }, h("p", { id: "restore-dry", text: `Dry run: ${dry.message || "ok"}` }), h("pre", { class: "mono", text: JSON.stringify(dry.report, null, 1) }), go));
    } catch (err) { report.replaceChildren(h("p", { class: "error", text: err.message })); }
  });
  const list = h("tbody");
  main.append(h("div", { class: "card" }, h("h2", { text: "Restore into Redis" }), h("p", { class: "muted", text: "A dry run comes first; nothing is written until you confirm." }), form, report),
    h("div", { class: "card" }, h("h2", { text: "Jobs" }), h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["id", "kind", "state", "progress", "started", "message", ""].map((t) => h("th", { text: t })))), list)));
  const refresh = async () => {
    try { list.replaceChildren(...(await api("/api/jobs")).map(jobRow)); } catch (err) { list.replaceChildren(h("tr", {}, h("td", { class: "error", text: err.message }))); }
  };
  await refresh();
  state.jobsTimer = setInterval(refresh, 1000);
}

// Follows a job's progress over Server-Sent Events (the jobs table shows it live); polls
// if the stream cannot be opened.
async function waitJob(j) {
  if (j.id === null) return j;
  if (window.EventSource) {
    const ended = await new Promise((resolve) => {
      const es = new EventSource(`/api/jobs/${j.id}/events`);
      es.addEventListener("status", (e) => {
        const s = JSON.parse(e.data);
        const row = document.querySelector(`#jobs tr[data-job="${s.id}"]`);
        if (row) row.replaceWith(jobRow(s));
        if (!["queued", "running"].includes(s.state)) { es.close(); resolve(s); }
      });
      es.onerror = () => { es.close(); resolve(null); };
    });
    if (ended) return ended;
  }
  for (;;) {
    const s = await api(`/api/jobs/${j.id}`);
    if (!["queued", "running"].includes(s.state)) return s;
    await new Promise((r) => setTimeout(r, 400));
  }
}

const views = { snapshots: viewSnapshots, keys: viewKeys, memory: viewMemory, diff: viewDiff, timeline: viewTimeline, jobs: viewJobs };

async function route() {
  clearInterval(state.jobsTimer);
  const [name, arg, arg2] = (location.hash.replace(/^#\/?/, "") || "snapshots").split("/");
  const view = views[name] || viewSnapshots;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  const main = $("#main");
  main.replaceChildren();
  main.dataset.view = name;
  try { await view(main, arg, arg2); } catch (err) { main.append(h("p", { class: "error", text: err.message })); }
}

async function boot() {
  if (!(await startSession())) return;
  const repos = await api("/api/repos");
  const sel = $("#repo");
  sel.replaceChildren(...repos.map((r) => h("option", { value: r.name, text: `${r.name} (${r.location})` })));
  state.repo = repos.length ? repos[0].name : "";
  sel.onchange = () => { state.repo = sel.value; route(); };
  window.onhashchange = route;
  await route();
}

boot().catch((err) => { $("#main").replaceChildren(h("p", { class: "error", text: err.message })); });
