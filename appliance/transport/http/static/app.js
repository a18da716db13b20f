// The appliance's pages: plain JavaScript, no framework, nothing from a CDN.
// Every text from the device (names, reasons, log lines) goes into the page as
// textContent through el(), never as HTML, so a name like <script>... stays text.
"use strict";

const API = "/api/v1";
let csrf = "";
let timers = [];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 3000);
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, opts);
  if (r.status === 401 && path !== "/login") { showLogin(); throw new Error("log in first"); }
  const data = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok && !(data && data.photos)) throw new Error(data && data.error ? data.error.message : r.statusText);
  return data;
}

function when(t) { return t ? new Date(t * 1000).toLocaleString() : "—"; }
function hms(s) { const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60); return `${h} h ${String(m).padStart(2, "0")} min`; }
function badge(d) { return el("span", { class: "badge " + String(d).replace(/[^a-z_]/g, "") }, d); }
function card(title, ...children) { return el("section", { class: "card" }, el("h2", {}, title), ...children); }
function table(head, body) {
  return el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, head.map(h => el("th", {}, h)))), body));
}
function field(label, input) { return el("label", {}, label, input); }
function every(ms, fn) { fn(); timers.push(setInterval(fn, ms)); }
function guard(fn) { return async (ev) => { if (ev) ev.preventDefault(); try { await fn(ev); } catch (e) { toast(e.message); } }; }

function show(...nodes) {
  const m = document.getElementById("main");
  m.replaceChildren(...nodes);
}

// --- login ---------------------------------------------------------------------------

function showLogin(message) {
  timers.forEach(clearInterval); timers = [];
  document.getElementById("nav").hidden = true;
  const user = el("input", { name: "user", autocomplete: "username", required: true, id: "login-user" });
  const pass = el("input", { name: "password", type: "password", autocomplete: "current-password", required: true, id: "login-password" });
  const err = el("p", { class: "error", id: "login-error" }, message || "");
  const code = el("input", { name: "code", id: "setup-code" });
  const login = el("form", { id: "login-form", onsubmit: guard(async () => {
    try {
      const r = await api("POST", "/login", { user: user.value, password: pass.value });
      csrf = r.csrf; start();
    } catch (e) { err.textContent = e.message; }
  }) }, field("User", user), field("Password", pass), el("button", { type: "submit", id: "login-submit" }, "Log in"), err);
  const setup = el("details", {}, el("summary", {}, "First start: create the owner with the setup code from the log"),
    el("form", { onsubmit: guard(async () => {
      await api("POST", "/setup", { code: code.value, user: user.value, password: pass.value });
      err.textContent = "Owner created; log in now.";
    }) }, field("Setup code", code), el("button", { type: "submit" }, "Create owner (user and password above)")));
  show(el("section", { class: "card login" }, el("h2", {}, "Log in"), login, setup));
}

// --- live ----------------------------------------------------------------------------

function viewLive() {
  const img = el("img", { alt: "live view", id: "live-img" });
  const list = el("tbody", {});
  const caption = el("p", { id: "live-caption", "aria-live": "polite" });
  show(card("Live view", el("div", { class: "live" }, img), caption,
    el("p", { class: "muted" }, "Boxes: green a known person, red unknown; the last decision on top.")),
    card("Latest events", el("div", { class: "scroll" }, el("table", {}, list))));
  every(500, async () => {
    const r = await fetch(API + "/live.jpg?t=" + Date.now(), { credentials: "same-origin" });
    if (r.status === 200) { const u = URL.createObjectURL(await r.blob()); const old = img.src; img.src = u; if (old.startsWith("blob:")) URL.revokeObjectURL(old); }
    // The same as text (names the picture's font cannot draw, screen readers).
    const c = await api("GET", "/live.json");
    const faces = c.faces.map(f => f.label).join(", ") || "nobody in view";
    caption.textContent = c.decision ? `${faces} · ${c.decision}` : faces;
  });
  every(2000, async () => {
    const r = await api("GET", "/events?limit=8");
    list.replaceChildren(...r.events.map(e => el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.name || "unknown"), el("td", {}, badge(e.decision)))));
  });
}

// --- people --------------------------------------------------------------------------

function viewPeople() {
  const rows = el("tbody", { id: "people-rows" });
  const q = el("input", { type: "search", placeholder: "search", id: "people-search" });
  const details = el("div", { id: "person-details" });
  const load = guard(async () => {
    const r = await api("GET", "/people?q=" + encodeURIComponent(q.value));
    rows.replaceChildren(...r.people.map(p => el("tr", { "data-name": p.name },
      el("td", { class: "person-name" }, el("a", { href: "#people", "data-person": p.name, onclick: guard(() => showPerson(details, p)) }, p.name)),
      el("td", {}, (p.groups || []).join(", ") || "—"),
      el("td", { class: "hide-sm" }, (p.valid_from || "…") + " – " + (p.valid_until || "…")),
      el("td", {}, String(p.templates) + (p.stale_templates ? ` (+${p.stale_templates} stale)` : "")),
      el("td", { class: "hide-sm" }, when(p.last_seen)),
      el("td", {},
        el("button", { class: "secondary", type: "button", onclick: guard(async () => {
          const n = prompt("New name for " + p.name, p.name);
          if (n) { await api("PATCH", "/people/" + encodeURIComponent(p.id), { name: n }); load(); }
        }) }, "Rename"), " ",
        el("button", { class: "danger", type: "button", "data-delete": p.name, onclick: guard(async () => {
          if (!confirm("Delete " + p.name + " and erase their events?")) return;
          await api("DELETE", "/people/" + encodeURIComponent(p.id)); toast("deleted"); load();
        }) }, "Delete")))));
  });
  q.addEventListener("input", load);
  const name = el("input", { name: "name", required: true, id: "enrol-name" });
  const files = el("input", { type: "file", name: "photos", accept: "image/*", multiple: true, required: true, id: "enrol-photos" });
  const keep = el("input", { type: "checkbox", name: "keep_good", value: "true" });
  const results = el("div", { id: "enrol-results" });
  const enrol = el("form", { class: "row", id: "enrol-form", onsubmit: guard(async (ev) => {
    const fd = new FormData(ev.target);
    results.replaceChildren(el("p", { class: "muted" }, "checking photos…"));
    const r = await api("POST", "/people", fd);
    results.replaceChildren(
      el("p", { class: r.enrolled ? "ok" : "error" }, r.enrolled ? `Enrolled ${r.person.name}.` : "Nothing was stored." + (r.reason ? " " + r.reason : "")),
      el("ul", { class: "results" }, r.photos.map(p => el("li", {}, el("strong", {}, p.photo + ": "),
        p.accepted ? el("span", { class: "ok" }, "accepted") : el("span", { class: "error" }, "refused: " + p.reason + (p.hint ? ". What to do: " + p.hint : ""))))));
    if (r.enrolled) { ev.target.reset(); load(); }
  }) }, field("Name", name), field("Photos", files), el("label", { class: "check" }, keep, "store the good ones even if some are refused"), el("button", { type: "submit", id: "enrol-submit" }, "Enrol"));
  const cname = el("input", { required: true, id: "capture-name" });
  const live = el("p", { class: "feedback", id: "capture-feedback", "aria-live": "polite" });
  const capture = el("form", { class: "row", id: "capture-form", onsubmit: guard(async () => {
    results.replaceChildren(live);
    live.textContent = "Stand at the door and look at the camera…";
    // While the enrolment runs (the POST answers when it ends), show what the camera
    // sees a few times a second: "Come closer.", "Hold still.", 2 of 3 frames…
    let running = true;
    const poll = async () => {
      while (running) {
        try {
          const st = await api("GET", "/enrol/capture");
          if (running && st.active && st.feedback) {
            live.className = "feedback " + (st.feedback.code === "good" ? "ok" : "warn");
            live.textContent = st.feedback.message;
            live.dataset.code = st.feedback.code;
          }
        } catch (e) { /* the result below says what went wrong */ }
        await new Promise(r => setTimeout(r, 300));
      }
    };
    poll();
    try {
      const r = await api("POST", "/people/capture", { name: cname.value, frames: 3 });
      running = false;
      results.replaceChildren(el("p", { class: "ok", id: "capture-result" }, "Accepted: enrolled " + r.person.name + " from the camera.")); load();
    } catch (e) {
      running = false;
      results.replaceChildren(el("p", { class: "error", id: "capture-result" }, "Refused: " + e.message));
    }
  }) }, field("Name", cname), el("button", { type: "submit", id: "capture-submit" }, "Enrol from the camera"));
  const imp = el("input", { type: "file", accept: "application/json" });
  show(card("People", el("div", { class: "row" }, q,
      el("button", { class: "secondary", type: "button", onclick: guard(async () => download("/people/export", "gallery.json")) }, "Export"),
      el("label", {}, "Import", imp)),
    table(["Name", "Groups", "Valid", "Templates", "Last seen", ""], [rows])),
    details, card("Enrol", enrol, el("h3", {}, "…or from the camera"), capture, results));
  imp.addEventListener("change", guard(async () => {
    const data = JSON.parse(await imp.files[0].text());
    const r = await api("POST", "/people/import", data); toast(`imported ${r.imported}`); load();
  }));
  load();
}

// One person: their templates and the quality each was enrolled with.
async function showPerson(box, p) {
  const r = await api("GET", "/people/" + encodeURIComponent(p.id));
  const num = (v, digits) => (v === undefined || v === null) ? "—" : Number(v).toFixed(digits);
  const thumb = t => t.thumbnail === null ? "" : el("img", { alt: "template face", width: 48,
    src: API + "/people/" + encodeURIComponent(r.person.id) + "/thumbnails/" + t.thumbnail });
  const rows = el("tbody", { id: "template-rows" }, r.templates.map((t, i) => el("tr", {},
    el("td", {}, i + 1), el("td", {}, when(t.added)), el("td", {}, t.source),
    el("td", {}, num(t.quality.score, 2)), el("td", {}, num(t.quality.eye_distance, 1)),
    el("td", {}, num(t.quality.blur, 0)), el("td", {}, num(t.quality.frontal, 2)),
    el("td", { class: "hide-sm" }, t.embedder + (t.current ? "" : " (another model: re-enrol here)")),
    el("td", {}, thumb(t)))));
  box.replaceChildren(card(r.person.name + ": templates",
    el("p", { class: "muted" }, "The quality measured when each template was enrolled: detector score, eye distance in pixels, sharpness, frontal (1 = looking straight at the camera)."),
    table(["#", "Added", "Source", "Score", "Eye distance", "Sharpness", "Frontal", "Embedder", "Face"], [rows])));
  box.scrollIntoView({ block: "nearest" });
}

async function download(path, name) {
  const r = await fetch(API + path, { credentials: "same-origin" });
  if (!r.ok) throw new Error(r.statusText);
  const a = el("a", { href: URL.createObjectURL(await r.blob()), download: name });
  document.body.append(a); a.click(); a.remove();
}

// --- events --------------------------------------------------------------------------

function filters(ids) {
  const f = {};
  for (const [k, type] of ids) f[k] = el("input", { type, name: k, id: "f-" + k });
  return f;
}
function qs(f) { return Object.entries(f).filter(([, v]) => v.value).map(([k, v]) => k + "=" + encodeURIComponent(v.value)).join("&"); }

function viewEvents() {
  const f = filters([["person", "text"], ["decision", "text"], ["from", "date"], ["to", "date"]]);
  const rows = el("tbody", { id: "event-rows" });
  let last = 0;
  const row = e => el("tr", { "data-decision": e.decision },
    el("td", {}, when(e.at)), el("td", {}, e.kind), el("td", {}, badge(e.decision)),
    el("td", {}, e.name || (e.kind === "door" ? "" : "unknown")), el("td", { class: "hide-sm" }, e.reason || ""),
    el("td", { class: "hide-sm" }, e.score === null || e.score === undefined ? "" : e.score.toFixed(3)),
    el("td", {}, e.snapshot ? el("img", { src: API + "/events/" + encodeURIComponent(e.event_id) + "/snapshot", alt: "face", width: 48 }) : ""));
  const reload = guard(async () => {
    const r = await api("GET", "/events?limit=200&" + qs(f));
    rows.replaceChildren(...r.events.map(row));
    last = r.events.length ? r.events[0].seq : last;
  });
  const csv = el("a", { href: API + "/events.csv", download: "events.csv", id: "events-csv" }, "Export CSV");
  const update = () => { csv.href = API + "/events.csv?" + qs(f); };
  const form = el("form", { class: "row", onsubmit: guard(async () => { update(); await reload(); }) },
    Object.entries(f).map(([k, v]) => field(k, v)), el("button", { type: "submit" }, "Filter"), csv);
  show(card("Events", form, el("p", { class: "muted" }, "New events appear here by themselves."),
    table(["Time", "Kind", "Decision", "Name", "Reason", "Score", "Face"], [rows])));
  reload();
  timers.push(setInterval(async () => {
    try {
      const r = await api("GET", "/events?limit=100&after=" + last + "&" + qs(f));
      if (r.events.length) { last = r.events[0].seq; rows.prepend(...r.events.map(row)); }
    } catch (e) { /* shown on the next action */ }
  }, 2000));
}

// --- attendance ----------------------------------------------------------------------

function viewAttendance() {
  const f = filters([["from", "date"], ["to", "date"], ["person", "text"]]);
  const rows = el("tbody", { id: "attendance-rows" });
  const csv = el("a", { href: API + "/attendance.csv", download: "attendance.csv", id: "attendance-csv" }, "Export CSV");
  const load = guard(async () => {
    csv.href = API + "/attendance.csv?" + qs(f);
    const r = await api("GET", "/attendance?" + qs(f));
    rows.replaceChildren(...r.days.map(d => el("tr", {}, el("td", {}, d.date), el("td", {}, d.name),
      el("td", {}, d.first_in.slice(11, 19)), el("td", {}, d.last_out ? d.last_out.slice(11, 19) : "—"), el("td", {}, hms(d.present_s)))));
  });
  show(card("Attendance", el("form", { class: "row", onsubmit: load }, Object.entries(f).map(([k, v]) => field(k, v)),
    el("button", { type: "submit" }, "Show"), csv),
    el("p", { class: "muted" }, "Per person and day: the first and last presence event (granted, check in, check out). Default: the last 7 days."),
    table(["Date", "Name", "First in", "Last out", "Time present"], [rows])));
  load();
}

// --- door ----------------------------------------------------------------------------

function kv(obj) {
  return el("dl", { class: "kv" }, Object.entries(obj || {}).flatMap(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, v !== null && typeof v === "object" ? JSON.stringify(v) : String(v))]));
}

function viewDoor() {
  const state = el("div", { id: "door-state" });
  const mode = el("select", {}, ["normal", "passage", "lockdown"].map(m => el("option", { value: m }, m)));
  const group = el("input", { placeholder: "group (passage only)" });
  const secs = el("input", { type: "number", value: 5, min: 1, max: 3600 });
  const load = guard(async () => {
    try { const r = await api("GET", "/door"); state.replaceChildren(kv(r.door), el("h3", {}, "Mode"), kv(r.mode)); }
    catch (e) { state.replaceChildren(el("p", { class: "muted" }, e.message)); }
  });
  show(card("Door", state,
    el("form", { class: "row", onsubmit: guard(async () => { await api("POST", "/door/unlock", { duration_s: Number(secs.value) }); toast("unlocked"); load(); }) },
      field("Seconds", secs), el("button", { type: "submit" }, "Unlock")),
    el("form", { class: "row", onsubmit: guard(async () => { await api("PUT", "/door/mode", { mode: mode.value, group: group.value || null }); toast("mode set"); load(); }) },
      field("Mode", mode), field("Group", group), el("button", { type: "submit" }, "Set mode"))));
  every(3000, load);
}

// --- access rules --------------------------------------------------------------------

function viewRules() {
  const groups = el("tbody", {});
  const gname = el("input", { required: true }), windows = el("textarea", { rows: 3, placeholder: "mon-fri 08:00-18:00" }), hol = el("input", { placeholder: "2025-12-25, 2025-12-26" });
  const who = el("input", { required: true }), pg = el("input", { placeholder: "staff, cleaning" }), vf = el("input", { type: "date" }), vu = el("input", { type: "date" });
  const load = guard(async () => {
    const r = await api("GET", "/rules");
    groups.replaceChildren(...Object.entries(r.groups).map(([n, g]) => el("tr", {}, el("td", {}, n),
      el("td", {}, (g.windows || []).join("; ")), el("td", {}, (g.holidays || []).join(", ")),
      el("td", {}, el("button", { class: "danger", type: "button", onclick: guard(async () => { await api("DELETE", "/rules/groups/" + encodeURIComponent(n)); load(); }) }, "Delete")))));
  });
  const list = s => s.split(/[,\n]/).map(x => x.trim()).filter(Boolean);
  show(card("Access groups", table(["Group", "Windows", "Holidays", ""], [groups]),
    el("form", { class: "row", onsubmit: guard(async () => { await api("PUT", "/rules/groups/" + encodeURIComponent(gname.value), { windows: list(windows.value), holidays: list(hol.value) }); toast("saved"); load(); }) },
      field("Name", gname), field("Weekly windows (one a line)", windows), field("Holidays", hol), el("button", { type: "submit" }, "Save group"))),
  card("A person's rights",
    el("form", { class: "row", onsubmit: guard(async () => { await api("PUT", "/people/" + encodeURIComponent(who.value) + "/access", { groups: list(pg.value), valid_from: vf.value || null, valid_until: vu.value || null }); toast("saved"); }) },
      field("Person", who), field("Groups", pg), field("Valid from", vf), field("Valid until", vu), el("button", { type: "submit" }, "Save"))));
  load();
}

// --- system --------------------------------------------------------------------------

function viewSystem() {
  const health = el("div", {}), settings = el("form", { class: "row" }), logs = el("pre", { class: "log", id: "log-tail" }), tokens = el("tbody", {});
  const label = el("input", { placeholder: "what the token is for" });
  const loadTokens = guard(async () => {
    const r = await api("GET", "/tokens");
    tokens.replaceChildren(...r.tokens.map(t => el("tr", {}, el("td", {}, t.id), el("td", {}, t.label), el("td", {}, t.user), el("td", {}, when(t.last_used)),
      el("td", {}, el("button", { class: "danger", type: "button", onclick: guard(async () => { await api("DELETE", "/tokens/" + t.id); loadTokens(); }) }, "Revoke")))));
  });
  show(card("Health", health), card("Live settings", settings), card("Log", logs),
    card("API tokens", table(["Id", "Label", "User", "Last used", ""], [tokens]),
      el("form", { class: "row", onsubmit: guard(async () => { const t = await api("POST", "/tokens", { label: label.value }); prompt("Copy the token now; it is not shown again:", t.token); loadTokens(); }) },
        field("Label", label), el("button", { type: "submit" }, "New token")),
      el("p", { class: "muted" }, "Scripts send it as: Authorization: Bearer <token>. API schema: ", el("a", { href: API + "/openapi.json" }, "openapi.json"))));
  (async () => {
    const s = await api("GET", "/system/settings");
    const inputs = {};
    settings.replaceChildren(...s.settable.map(k => field(k, inputs[k] = el("input", { value: s.settings[k] === null ? "" : s.settings[k] }))),
      el("button", { type: "submit" }, "Apply"));
    settings.onsubmit = guard(async (ev) => {
      const body = {};
      for (const [k, i] of Object.entries(inputs)) {
        const old = s.settings[k] === null ? "" : String(s.settings[k]);
        if (i.value !== old) body[k] = i.value === "" ? null : (isNaN(Number(i.value)) ? i.value : Number(i.value));
      }
      if (!Object.keys(body).length) return toast("nothing changed");
      const r = await api("PATCH", "/system/settings", body); Object.assign(s.settings, r.settings); toast("applied until the next restart");
    });
  })().catch(e => toast(e.message));
  every(3000, async () => {
    const h = await api("GET", "/system/health");
    health.replaceChildren(kv({ version: h.version, mode: h.mode, fps: h.fps, "stage ms": h.stage_ms, camera: h.camera, mqtt: h.mqtt, outbox: h.outbox, storage: h.storage, gallery: h.gallery, door: h.door, uptime_s: h.uptime_s }));
    const l = await api("GET", "/system/log?n=100");
    logs.textContent = l.lines.map(x => `${new Date(x.at * 1000).toLocaleTimeString()} ${x.level} ${x.logger}: ${x.message}`).join("\n");
  });
  loadTokens();
}

// --- routing -------------------------------------------------------------------------

const VIEWS = { live: viewLive, people: viewPeople, events: viewEvents, attendance: viewAttendance, door: viewDoor, rules: viewRules, system: viewSystem };

function route() {
  timers.forEach(clearInterval); timers = [];
  const name = (location.hash || "#live").slice(1);
  const view = VIEWS[name] || viewLive;
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.dataset.view === name));
  view();
}

async function start() {
  try {
    const r = await api("GET", "/session");
    csrf = r.csrf;
    document.getElementById("brand").textContent = "Door · " + r.user;
  } catch (e) { return; }
  document.getElementById("nav").hidden = false;
  route();
}

window.addEventListener("hashchange", () => { if (csrf) route(); });
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", guard(async () => { await api("POST", "/logout"); csrf = ""; showLogin("Logged out."); }));
  start();
});
