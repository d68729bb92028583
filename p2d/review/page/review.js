// p2d review: the page. Plain JavaScript, no build step, nothing from the web.
"use strict";

const TOKEN = new URLSearchParams(location.search).get("token") || "";
const CHUNK = 120; // cards added per scroll step: thousands of drawings open at once
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

let state = null;          // the server's /api/state
let section = "drawings";
let edits = {};            // rel -> {box, view, drop} | null (forget the hand entry): unsaved
let filter = "all";
let order = [];            // item ids in list order (after the filter)
let current = 0;           // index into order
let shown = 0;             // cards rendered so far
let photoCurrent = -1;
let busy = false;

// ----------------------------------------------------------------------------- server

async function api(path, body) {
  const options = {headers: {"X-P2D-Token": TOKEN}};
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw Object.assign(new Error(data.error || response.statusText), {status: response.status});
  return data;
}

const img = (kind, id, extra) => `img/${kind}/${id}?token=${encodeURIComponent(TOKEN)}${extra || ""}`;

function toast(text, error) {
  const t = $("toast");
  t.textContent = text;
  t.className = "show" + (error ? " error" : "");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.className = ""), error ? 8000 : 2500);
}

async function run(label, action) {
  if (busy) return;
  busy = true;
  document.querySelectorAll("header .actions button").forEach((b) => (b.disabled = true));
  $("status").textContent = label + "...";
  try {
    await action();
  } catch (e) {
    toast(e.message, true);
  } finally {
    busy = false;
    document.querySelectorAll("header .actions button").forEach((b) => (b.disabled = false));
    renderStatus();
  }
}

function setState(data) {
  state = data;
  $("folder").textContent = data.folder;
  renderTabs();
  if (data.drawings) buildOrder(true);
  renderSection();
}

// ----------------------------------------------------------------------------- drawings: the model

const drawings = () => state.drawings.items;
const LABELS = {none: "no face", proposed: "proposed box", low: "one detector", facing: "check facing",
                dropped: "dropped", rejected: "no face (by hand)", hand: "by hand", ok: "found"};

function effective(item) {
  // The item as it will be once the unsaved edit is saved.
  if (!(item.rel in edits)) return item;
  const e = edits[item.rel];
  if (e === null) return {...item, status: item.keep && item.detector !== "hand" ? item.status : "none",
                          box: item.detector === "hand" ? null : item.box, drop: "", hand_view: "", edited: true};
  if (e.drop) return {...item, status: "rejected", drop: e.drop, box: null, edited: true};
  return {...item, status: "hand", box: e.box, facing: e.view || item.facing,
          facing_from: e.view ? "hand" : item.facing_from, hand_view: e.view || "", drop: "", edited: true};
}

function buildOrder(keepCurrent) {
  const rank = Object.fromEntries(state.drawings.order.map((s, i) => [s, i]));
  const id = order.length ? order[current] : null;
  order = drawings()
    .filter((x) => filter === "all" || x.status === filter)
    .sort((a, b) => rank[a.status] - rank[b.status] || a.rel.localeCompare(b.rel))
    .map((x) => x.id);
  const at = keepCurrent && id !== null ? order.indexOf(id) : -1;
  current = at >= 0 ? at : 0;
  shown = 0;
  $("cards").textContent = "";
  renderCards();
}

function edit(item, change) {
  const now = effective(item);
  edits[item.rel] = {box: now.box, view: now.hand_view || "", drop: "", ...change};
  refreshCurrent();
}

// ----------------------------------------------------------------------------- drawings: the list

function renderFilters() {
  const counts = state.drawings.counts;
  const el = $("filters");
  el.textContent = "";
  for (const name of ["all", ...state.drawings.order]) {
    const n = name === "all" ? drawings().length : counts[name];
    if (name !== "all" && !n) continue;
    const b = document.createElement("button");
    b.innerHTML = (name === "all" ? "" : `<span class="dot s-${name}"></span> `) + `${LABELS[name] || name} ${n}`;
    b.className = name === filter ? "on" : "";
    b.dataset.filter = name;
    b.onclick = () => { filter = name; renderFilters(); buildOrder(false); renderEditor(); };
    el.append(b);
  }
}

function card(id) {
  const item = effective(drawings()[id]);
  const c = document.createElement("div");
  c.className = "card" + (item.edited ? " edited" : "");
  c.dataset.id = id;
  c.innerHTML = `<img loading="lazy" alt=""><div class="label"></div><span class="dot s-${item.status}"></span>`;
  c.querySelector("img").src = img("drawing", id, "&size=160");
  c.querySelector(".label").textContent = item.name;
  c.title = `${item.rel}: ${LABELS[item.status]}`;
  c.onclick = () => { current = order.indexOf(id); markCurrent(); renderEditor(); };
  return c;
}

function renderCards() {
  const box = $("cards");
  const end = Math.min(order.length, shown + CHUNK);
  const frag = document.createDocumentFragment();
  for (let i = shown; i < end; i++) frag.append(card(order[i]));
  box.querySelector(".more")?.remove();
  box.append(frag);
  shown = end;
  if (shown < order.length) {
    const more = document.createElement("div");
    more.className = "more";
    more.style.width = "100%";
    more.style.height = "1px";
    box.append(more);
    new IntersectionObserver((entries, obs) => {
      if (entries.some((e) => e.isIntersecting)) { obs.disconnect(); renderCards(); }
    }, {root: box, rootMargin: "600px"}).observe(more);
  }
  markCurrent();
}

function markCurrent() {
  document.querySelectorAll(".card.current").forEach((c) => c.classList.remove("current"));
  const id = order[current];
  const c = document.querySelector(`.card[data-id="${id}"]`);
  if (c) { c.classList.add("current"); c.scrollIntoView({block: "nearest"}); }
  $("crop-caption").textContent = "crop" + (id !== undefined && effective(drawings()[id]).edited ? " (before Apply)" : "");
}

function refreshCurrent() {
  const id = order[current];
  const old = document.querySelector(`.card[data-id="${id}"]`);
  if (old) old.replaceWith(card(id));
  markCurrent();
  renderEditor();
  renderStatus();
}

function move(step) {
  if (!order.length) return;
  current = Math.max(0, Math.min(order.length - 1, current + step));
  while (current >= shown) renderCards();
  markCurrent();
  renderEditor();
}

// ----------------------------------------------------------------------------- drawings: the editor

function renderEditor() {
  const id = order[current];
  const big = $("big");
  const overlay = $("overlay");
  if (id === undefined) {
    big.removeAttribute("src");
    overlay.textContent = "";
    $("name").textContent = "nothing to show with this filter";
    $("info").textContent = "";
    $("crop").removeAttribute("src");
    return;
  }
  const item = effective(drawings()[id]);
  if (item.width && item.height) fit(item);
  const src = img("drawing", id, "&size=720");
  if (big.getAttribute("src") !== src) {
    big.onload = () => placeOverlay(item);
    big.setAttribute("src", src);
  } else placeOverlay(item);
  $("name").textContent = item.rel || item.name;
  const facing = item.facing ? `facing <b>${esc(item.facing)}</b>${item.facing_from ? " (" + esc(item.facing_from) + ")" : ""}` : "";
  const who = item.status === "hand" ? "box by hand" : item.keep ? `found by <b>${esc(item.detector)}</b>` +
    (item.score !== null ? ` score ${item.score.toFixed(2)}` : "") + (item.votes ? `, ${item.votes} vote(s)` : "") : "";
  const why = item.status === "rejected" ? `no face: ${esc(item.drop)}` :
    item.reason === "no_face" ? "the detectors found no face" :
    !item.keep && item.reason ? `dropped: ${esc(item.reason)}` : "";
  const prop = item.proposal && !item.box ? `proposed box (${esc(item.proposal_from)}` +
    (item.proposal_score !== null ? ` ${item.proposal_score.toFixed(2)}` : "") + "): press A to accept" : "";
  $("info").innerHTML = [`<span class="dot s-${item.status}"></span> <b>${LABELS[item.status]}</b>${item.edited ? " (unsaved)" : ""}`,
    who, why, facing, prop].filter(Boolean).join("<br>");
  const crop = $("crop");
  const version = state.drawings.items[id].crop_version;
  crop.parentElement.hidden = !version;
  if (version) {
    crop.src = img("crop", id, "&v=" + version);
    crop.classList.toggle("stale", !!item.edited);
  } else crop.removeAttribute("src");
}

function fit(item) {
  // The drawing as large as the stage allows, small drawings scaled up: boxes are drawn at that scale.
  const stage = $("stage");
  const s = Math.min((stage.clientWidth - 24) / item.width, (stage.clientHeight - 24) / item.height);
  $("big").style.width = Math.floor(item.width * s) + "px";
  $("big").style.height = Math.floor(item.height * s) + "px";
}

function placeOverlay(item) {
  const big = $("big");
  const overlay = $("overlay");
  if (!item.width || !item.height) { overlay.textContent = ""; return; }
  fit(item);
  overlay.style.left = big.offsetLeft + "px";
  overlay.style.top = big.offsetTop + "px";
  overlay.setAttribute("width", big.clientWidth);
  overlay.setAttribute("height", big.clientHeight);
  overlay.setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  overlay.setAttribute("preserveAspectRatio", "none");
  drawBoxes(item);
}

function rect(cls, box) {
  const r = document.createElementNS(SVG, "rect");
  r.setAttribute("class", cls);
  r.setAttribute("x", box[0]); r.setAttribute("y", box[1]);
  r.setAttribute("width", box[2]); r.setAttribute("height", box[3]);
  return r;
}

function drawBoxes(item) {
  const overlay = $("overlay");
  overlay.textContent = "";
  const background = rect("", [0, 0, item.width, item.height]);
  background.setAttribute("fill", "transparent");
  overlay.append(background);
  if (item.proposal && !item.box) overlay.append(rect("proposal", item.proposal));
  if (item.box) {
    overlay.append(rect("box" + (item.status === "hand" ? " hand" : ""), item.box));
    const [x, y, w, h] = item.box;
    const r = Math.max(item.width, item.height) / 90;
    for (const [name, cx, cy] of [["nw", x, y], ["ne", x + w, y], ["sw", x, y + h], ["se", x + w, y + h]]) {
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("class", "handle " + name);
      c.dataset.corner = name;
      c.setAttribute("cx", cx); c.setAttribute("cy", cy); c.setAttribute("r", r);
      overlay.append(c);
    }
  }
}

function toImage(event) {
  const overlay = $("overlay");
  const p = overlay.createSVGPoint();
  p.x = event.clientX; p.y = event.clientY;
  const q = p.matrixTransform(overlay.getScreenCTM().inverse());
  return [q.x, q.y];
}

let drag = null;

function startDrag(event) {
  const id = order[current];
  if (id === undefined || event.button !== 0) return;
  const item = effective(drawings()[id]);
  const [px, py] = toImage(event);
  const corner = event.target.dataset.corner;
  const box = item.box;
  if (corner && box) {
    const [x, y, w, h] = box;
    const anchor = {nw: [x + w, y + h], ne: [x, y + h], sw: [x + w, y], se: [x, y]}[corner];
    drag = {mode: "draw", anchor, item};
  } else if (box && event.target.classList.contains("box")) {
    drag = {mode: "move", from: [px, py], box: box.slice(), item};
  } else {
    drag = {mode: "draw", anchor: [px, py], item};
  }
  $("overlay").setPointerCapture(event.pointerId);
  event.preventDefault();
}

function dragBox(event) {
  if (!drag) return null;
  const {item} = drag;
  let [px, py] = toImage(event);
  px = Math.max(0, Math.min(item.width, px));
  py = Math.max(0, Math.min(item.height, py));
  if (drag.mode === "move") {
    const [x, y, w, h] = drag.box;
    const nx = Math.max(-w / 2, Math.min(item.width - w / 2, x + px - drag.from[0]));
    const ny = Math.max(-h / 2, Math.min(item.height - h / 2, y + py - drag.from[1]));
    return [nx, ny, w, h];
  }
  const [ax, ay] = drag.anchor;
  return [Math.min(ax, px), Math.min(ay, py), Math.abs(px - ax), Math.abs(py - ay)];
}

function moveDrag(event) {
  const box = dragBox(event);
  if (box) drawBoxes({...drag.item, box, status: "hand"});
}

function endDrag(event) {
  const box = dragBox(event);
  const item = drag && drawings()[order[current]];
  drag = null;
  if (!box || !item) return;
  const min = Math.max(4, Math.max(item.width, item.height) / 200);
  if (box[2] < min || box[3] < min) { renderEditor(); return; } // a click, not a box
  edit(item, {box: box.map((v) => Math.round(v * 10) / 10), drop: ""});
}

// ----------------------------------------------------------------------------- drawings: keys and actions

function drawingKey(key) {
  const id = order[current];
  const item = id === undefined ? null : drawings()[id];
  const now = item && effective(item);
  switch (key) {
    case "j": case "ArrowDown": case "ArrowRight": move(1); return true;
    case "k": case "ArrowUp": case "ArrowLeft": move(-1); return true;
    case "a": case "Enter":
      if (!now) return true;
      if (!now.proposal || now.box) { toast("no proposed box to accept here"); return true; }
      edit(item, {box: now.proposal, drop: ""});
      move(1);
      return true;
    case "f": case "l": case "r": {
      if (!now) return true;
      if (!now.box) { toast("draw a box (or accept the proposal) first, then set the facing", true); return true; }
      edit(item, {view: {f: "frontal", l: "left", r: "right"}[key], drop: ""});
      return true;
    }
    case "x":
      if (!now) return true;
      edit(item, {box: null, view: "", drop: $("drop-reason").value.trim() || "no face"});
      move(1);
      return true;
    case "u": case "Backspace":
      if (!item) return true;
      if (item.rel in edits) delete edits[item.rel];
      else if (item.detector === "hand" || item.drop || item.hand_view) edits[item.rel] = null;
      refreshCurrent();
      return true;
  }
  return false;
}

async function save() {
  const n = Object.keys(edits).length;
  if (!n) return;
  const data = await api("api/drawings/save", {version: state.drawings.version, edits});
  edits = {};
  setState(data);
  toast(`saved ${n} drawing(s) to boxes.csv`);
}

// ----------------------------------------------------------------------------- photos

function photoGroup(p) {
  if (p.override) return `override: ${p.override}`;
  return p.keep ? "kept" : (p.filter_reason || p.reason).split(":")[0];
}

function renderPhotos() {
  const box = $("photo-groups");
  box.textContent = "";
  const showKept = $("show-kept").checked;
  const groups = {};
  state.photos.items.forEach((p) => {
    const key = photoGroup(p);
    if (key === "kept" && !showKept) return;
    (groups[key] = groups[key] || []).push(p);
  });
  if (!Object.keys(groups).length) box.textContent = "No dropped photos: tick \"show kept photos\" to see the rest.";
  const order = (name) => (name === "kept" ? "~" : name); // the drops first, the kept photos last
  for (const [name, items] of Object.entries(groups).sort((a, b) => order(a[0]).localeCompare(order(b[0])))) {
    const g = document.createElement("div");
    g.className = "group";
    g.innerHTML = `<h3></h3><div class="row"></div>`;
    g.querySelector("h3").textContent = `${name} (${items.length})`;
    for (const p of items.slice(0, 2000)) {
      const c = document.createElement("div");
      c.className = "photo" + (p.id === photoCurrent ? " current" : "") +
        (p.override === "keep" ? " kept-by-override" : p.override === "drop" ? " dropped-by-override" : "");
      c.dataset.id = p.id;
      c.dataset.path = p.path;
      const src = p.has_image ? img("photo", p.id, "&size=160") :
        p.has_source ? img("photo", p.id, "&size=160&which=source") : "";
      c.innerHTML = `<img loading="lazy" alt=""><div class="what"></div>`;
      if (src) c.querySelector("img").src = src;
      const lines = [esc(p.path.split("/").pop()), p.keep ? "kept" : esc(p.reason)];
      if (p.rule) lines.push(esc(p.rule));
      if (p.override) lines.push(`<span class="ov">override: ${esc(p.override)}</span>`);
      else if (!p.keep && p.can_keep) lines.push(`<span class="hint">cannot keep: ${esc(p.can_keep)}</span>`);
      c.querySelector(".what").innerHTML = lines.join("<br>");
      c.onclick = () => { photoCurrent = p.id; renderPhotos(); };
      g.querySelector(".row").append(c);
    }
    box.append(g);
  }
}

async function photoKey(key) {
  if (photoCurrent < 0) return false;
  const decision = {k: "keep", d: "drop", u: null}[key];
  if (decision === undefined) return false;
  const p = state.photos.items[photoCurrent];
  await run("saving the override", async () => {
    setState(await api("api/photos/override", {version: state.photos.version, changes: {[p.path]: decision}}));
    toast(decision ? `${p.path}: ${decision} (overrides.csv)` : `${p.path}: override removed`);
  });
  return true;
}

// ----------------------------------------------------------------------------- duplicates

function renderDuplicates() {
  const box = $("groups");
  box.textContent = "";
  if (!state.duplicates.groups.length) { box.textContent = "No duplicate groups in this folder."; return; }
  let n = 0;
  state.duplicates.groups.forEach((g, k) => {
    const el = document.createElement("div");
    el.className = "group";
    el.innerHTML = `<h3></h3><div class="row"></div>`;
    el.querySelector("h3").textContent = `group ${k + 1}: ${g.members.length} images, kept: ${g.keeper.split("/").pop()}`;
    for (const m of g.members) {
      const c = document.createElement("div");
      c.className = "member";
      const sim = m.similarity === null || m.similarity === undefined ? "keeper" : `similarity ${Number(m.similarity).toFixed(3)}`;
      c.innerHTML = `<img loading="lazy" alt=""><div></div>`;
      c.querySelector("img").src = img("dup", n++, "&size=160");
      c.querySelector("div").textContent = `${m.path.split("/").pop()}: ${sim}`;
      if (m.path !== g.keeper) {
        const b = document.createElement("button");
        b.textContent = "Not a duplicate";
        b.onclick = () => run("splitting the group", async () => {
          setState(await api("api/duplicates/split", {version: state.duplicates.version, path: m.path}));
          toast(`${m.path} split off its group (not_duplicates.csv)`);
        });
        c.append(b);
      }
      el.querySelector(".row").append(c);
    }
    box.append(el);
  });
}

// ----------------------------------------------------------------------------- the frame

function renderTabs() {
  const nav = $("tabs");
  nav.textContent = "";
  if (!state.sections.includes(section)) section = state.sections[0];
  for (const name of state.sections) {
    const b = document.createElement("button");
    b.textContent = name[0].toUpperCase() + name.slice(1);
    b.className = name === section ? "on" : "";
    b.onclick = () => { section = name; renderTabs(); renderSection(); };
    nav.append(b);
  }
  const d = section === "drawings";
  for (const id of ["save", "apply", "learn"]) $(id).hidden = !d;
}

function renderSection() {
  for (const name of ["drawings", "photos", "duplicates"]) $(name).hidden = name !== section;
  if (section === "drawings") { renderFilters(); renderEditor(); }
  if (section === "photos") renderPhotos();
  if (section === "duplicates") renderDuplicates();
  renderStatus();
}

function renderStatus() {
  if (!state || busy) return;
  const parts = [];
  if (state.drawings) {
    const s = state.drawings.status;
    const pending = Object.keys(edits).length;
    parts.push(`Drawings: <b>${s.with_face}</b> of ${s.total} have a face, <b>${s.by_hand}</b> fixed by hand, ` +
      `${s.rejected} marked no face, <b>${s.left}</b> left to look at` +
      (pending ? `, <b>${pending}</b> unsaved` : ""));
    $("save").classList.toggle("dirty", pending > 0);
  }
  if (state.photos) {
    const kept = state.photos.items.filter((p) => p.keep).length;
    const over = state.photos.items.filter((p) => p.override).length;
    parts.push(`Photos: <b>${kept}</b> of ${state.photos.items.length} kept, ${over} overridden`);
  }
  if (state.duplicates.groups.length) parts.push(`${state.duplicates.groups.length} duplicate group(s)`);
  $("status").innerHTML = parts.join(" &middot; ");
}

document.addEventListener("keydown", (event) => {
  if (event.target.tagName === "INPUT" || event.ctrlKey && event.key !== "s" || event.metaKey || event.altKey) return;
  if (event.key === "?") { $("help").showModal(); event.preventDefault(); return; }
  if (event.key === "s" || event.key === "S") { run("saving", save); event.preventDefault(); return; }
  if (!state) return;
  if (section === "drawings" && drawingKey(event.key.length === 1 ? event.key.toLowerCase() : event.key)) {
    event.preventDefault();
  } else if (section === "photos" && "kdu".includes(event.key.toLowerCase()) && event.key.length === 1) {
    photoKey(event.key.toLowerCase());
    event.preventDefault();
  }
});

$("save").onclick = () => run("saving", save);
$("apply").onclick = () => run("applying: re-cropping the changed drawings", async () => {
  await save();
  const data = await api("api/drawings/apply", {});
  setState(data);
  toast(`applied: ${data.applied.kept} of ${data.applied.total} drawings have a face`);
});
$("learn").onclick = () => run("learning from the confirmed faces", async () => {
  const data = await api("api/drawings/learn", {});
  setState(data);
  const l = data.learned;
  toast(`learned from ${l.trained_on} faces: ${l.proposed} new proposal(s) on ${l.searched} drawings without a face`);
});
$("help-button").onclick = () => $("help").showModal();
$("show-kept").onchange = renderPhotos;
$("overlay").addEventListener("pointerdown", startDrag);
$("overlay").addEventListener("pointermove", moveDrag);
$("overlay").addEventListener("pointerup", endDrag);
document.querySelectorAll("#side button[data-key]").forEach((b) => (b.onclick = () => drawingKey(b.dataset.key)));
window.addEventListener("resize", () => state && section === "drawings" && renderEditor());
window.addEventListener("beforeunload", (event) => { if (Object.keys(edits).length) event.preventDefault(); });

api("api/state").then((data) => {
  setState(data);
  document.body.dataset.ready = "1"; // tests and the benchmark wait for this
}).catch((e) => toast(e.message, true));
