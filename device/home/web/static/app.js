// The review page: recent items first, relabelling with undo, the bin's status folded away;
// at #camera, the chamber now beside its empty reference, to aim and focus the camera by.
// The list never moves under the thumb: new items wait behind a "N new items" bar; each relabel
// answers on its own card (saving, saved, refused) with a toast there, which offers the undo.
"use strict";

const TOKEN_KEY = "smartbin-token";
const PAGE = 24;
const UNDO_MS = 8000;  // how long a saved relabel offers its undo (the bin takes one back for 60 s)
const ERROR_MS = 20000;  // how long a refusal stays on its card unless dismissed
const THUMB_STEP = 80;  // the widths the bin makes thumbnails at: steps of 80 px, 80 to 1280
const THUMB_MAX = 1280;
const $ = (id) => document.getElementById(id);
let status = null;
let filter = "";
let lastItemId;  // undefined: nothing shown yet
let oldest = null;
let pending = null;  // the newest page, fetched while the list stays where it is

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const named = (label) => label == null ? "no frame" : label.replace("_", " ");
const verdict = (event) => event.label || (event.reason === "empty" ? "empty" : null);  // the bin's

function say(text) { $("message").textContent = text; }

function pageToast(text) {
  $("page-toast").textContent = text;
  $("page-toast").hidden = !text;
}

function uptime(seconds) {
  if (seconds == null) return "–";
  const s = Math.floor(seconds), d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + h + "h " + m + "m";
}

function showStatus(st) {
  status = st;
  $("state").textContent = st.busy ? "sorting" : st.state;
  $("state").className = "pill" + (st.busy ? " busy" : "");
  $("model").textContent = st.model_version || "–";
  $("uptime").textContent = uptime(st.uptime_s) + " · " + st.items + " items since start";
  const reference = st.empty_reference;  // absent: a daemon without the empty check
  $("reference").textContent = !("empty_reference" in st) ? "–"
    : reference && reference.set ? "set" + (reference.taken ? " (" + reference.taken.slice(0, 16).replace("T", " ") + ")" : "")
    : "not set: run 'smartbin calibrate'" + (reference && reference.problem ? " (" + reference.problem + ")" : "");
  const update = st.update;  // null or absent: the bin does not update itself ([updates] url)
  $("update").textContent = !update ? "off"
    : update.state + (update.reason ? ": " + update.reason : "") + (update.next_check_at ? " · next check " + update.next_check_at.slice(0, 16).replace("T", " ") : "");
  $("update").className = update && (update.state === "failed" || update.state === "refused") ? "fault" : "";
  const faults = Object.entries(st.faults || {}).map(([kind, count]) => kind + " " + count);
  $("faults").textContent = faults.length ? faults.join(", ") + " (items since start)" : "none since start";
  $("faults").className = faults.length ? "fault" : "";
  const rows = [];
  const fill = st.fill || {};
  const full = [];
  for (const [name, total] of Object.entries(st.counts.total)) {
    const level = fill[name];
    const tr = document.createElement("tr");
    const cells = [name, st.counts.today[name], total, level && level.percent != null ? Math.round(level.percent) + "%" + (level.full ? " FULL" : "") : "–"];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    if (level && level.full) { tr.lastChild.className = "full"; full.push(name); }
    rows.push(tr);
  }
  $("counts").tBodies[0].replaceChildren(...rows);
  const warnings = [...(st.warnings || [])];
  for (const [key, count] of Object.entries((st.observers || {}).failures || {})) warnings.push("observer " + key + " failed " + count + " time(s)");
  $("warnings").replaceChildren(...warnings.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
  // one line, whatever happens: the list below must not move
  const notes = [st.items + " items since start"];
  if (full.length) notes.push(full.join(", ") + " full");
  if (faults.length) notes.push(faults.length + " fault kind" + (faults.length > 1 ? "s" : ""));
  if (warnings.length) notes.push(warnings.length + " warning" + (warnings.length > 1 ? "s" : ""));
  $("summary").textContent = notes.join(" · ");
  $("summary").classList.toggle("warn", full.length + faults.length + warnings.length > 0);
}

// --- a card ---------------------------------------------------------------------------------

function card(event) {
  const li = $("item").content.firstElementChild.cloneNode(true);
  li.dataset.id = event.id;
  li.classList.toggle("uncertain", event.reason === "low_confidence");
  const img = li.querySelector("img");
  const photo = li.querySelector(".photo");
  if (event.photo) {
    img.dataset.src = "/api/events/" + event.id + "/photo";
    img.alt = "item " + event.id;
    photo.addEventListener("click", () => view(event));
  } else {
    img.alt = "no photo";
    photo.disabled = true;
  }
  li.querySelector(".label").textContent = named(verdict(event));
  li.querySelector(".confidence").textContent = event.confidence == null ? "" : Math.round(event.confidence * 100) + "%";
  li.querySelector(".compartment").textContent = event.compartment || "no move";
  li.querySelector(".reason").textContent = event.reason + (event.error ? " (" + event.error + ")" : "");
  li.querySelector(".latency").textContent = event.latency_ms.toFixed(0) + " ms";
  const time = li.querySelector("time");
  time.dateTime = event.ts;
  time.textContent = new Date(event.ts).toLocaleString();
  for (const label of status.review_labels) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = label;
    button.textContent = named(label);
    button.classList.toggle("said", label === verdict(event));
    button.addEventListener("click", () => {
      for (const other of li.querySelectorAll(".choices button")) other.classList.toggle("tapped", other === button);
      relabel(event, label, li);
    });
    li.querySelector(".choices").append(button);
  }
  paint(li, event);
  return li;
}

function paint(li, event) {
  const reviewed = event.review ? event.review.label : null;
  li.classList.toggle("wrong", reviewed != null && reviewed !== verdict(event));
  for (const button of li.querySelectorAll(".choices button")) button.classList.toggle("chosen", button.dataset.label === reviewed);
  const review = li.querySelector(".review");
  review.textContent = reviewed ? "reviewed: " + named(reviewed) : "not reviewed";
  review.classList.toggle("done", reviewed != null);
  delete li.dataset.state;
}

function setState(li, state, text) {
  li.dataset.state = state;
  li.querySelector(".review").textContent = text;
}

function toast(li, text, actions, ms) {
  const box = li.querySelector(".toast");
  clearTimeout(box.timer);
  const hide = () => { box.hidden = true; };
  box.querySelector(".toast-text").textContent = text;
  const buttons = [...actions, ["ok", () => {}]].map(([name, act]) => {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = name;
    button.className = name === "ok" ? "dismiss" : "act";
    button.addEventListener("click", () => { clearTimeout(box.timer); hide(); act(); });
    return button;
  });
  box.querySelector(".toast-actions").replaceChildren(...buttons);
  box.classList.toggle("error", li.dataset.state === "refused");
  box.hidden = false;
  placeNear(box, li);
  box.timer = setTimeout(hide, ms);
}

// Over the photo, level with the button last tapped, on the screen: where the eye already is,
// leaving every button free for a second thought.
function placeNear(box, li) {
  const photo = li.querySelector(".photo");
  const tapped = li.querySelector(".choices button.tapped") || photo;
  box.style.left = photo.offsetLeft + "px";
  box.style.width = photo.offsetWidth + "px";
  const card = li.getBoundingClientRect(), near = tapped.getBoundingClientRect();
  const margin = 4, height = box.offsetHeight;
  const top = Math.min(Math.max(near.top + (near.height - height) / 2, margin), innerHeight - margin - height);
  box.style.top = top - card.top + "px";
}

function askToken() {
  const token = (prompt("The bin's token (smartbin web token) to relabel items, or open a sign-in link (smartbin web link):") || "").trim();
  if (token) localStorage.setItem(TOKEN_KEY, token);
  return token || null;
}

// A write with the token or the sign-in cookie: {response, body}; null when neither was given. Throws when the bin does not answer.
async function post(url, payload) {
  // a sign-in link's cookie (smartbin web link) needs no token
  const token = localStorage.getItem(TOKEN_KEY) || (status.signed_in ? null : askToken());
  if (!token && !status.signed_in) return null;
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token && { "Authorization": "Bearer " + token }) },
    body: JSON.stringify(payload),
  });
  let body;
  try { body = await response.json(); } catch { body = { error: response.status + " " + response.statusText }; }
  return { response, body };
}

// A refusal stays on the card, saying why; a token refused is kept (a bin without its token file
// refuses a good one) until the person gives another.
function refused(li, what, error, status, retry) {
  setState(li, "refused", what + " refused");
  const again = status === 401 ? ["new token", () => { if (askToken()) retry(); }] : ["try again", retry];
  toast(li, what + " refused: " + error, [again], ERROR_MS);
}

async function relabel(event, label, li) {
  if (li.dataset.state === "saving") return;
  const before = event.review;
  setState(li, "saving", "saving: " + named(label) + "…");
  let answer;
  try {
    answer = await post("/api/events/" + event.id + "/label", { label });
  } catch (error) {
    return refused(li, "relabel", "the bin does not answer (" + error.message + ")", 0, () => relabel(event, label, li));
  }
  if (answer == null) return paint(li, event);  // no token given
  if (!answer.response.ok) {
    return refused(li, "relabel", answer.body.error, answer.response.status, () => relabel(event, label, li));
  }
  const review = answer.body.review;
  event.review = review;
  paint(li, event);
  setState(li, "saved", "saved: " + named(label));
  if (before && before.id === review.id) {  // it was that already: nothing to take back
    toast(li, "item " + event.id + " was " + named(label) + " already", [], UNDO_MS);
  } else {
    toast(li, "item " + event.id + ": " + named(label) + " (was " + named(review.old_label) + ")",
      [["undo", () => undo(event, review, li)]], UNDO_MS);
  }
  refreshCounts();
}

async function undo(event, review, li) {
  setState(li, "saving", "undoing " + named(review.label) + "…");
  let answer;
  try {
    answer = await post("/api/events/" + event.id + "/undo", { review: review.id });
  } catch (error) {
    return refused(li, "undo", "the bin does not answer (" + error.message + ")", 0, () => undo(event, review, li));
  }
  if (answer == null) return setState(li, "saved", "saved: " + named(review.label));
  if (!answer.response.ok) {
    return refused(li, "undo", answer.body.error, answer.response.status, () => undo(event, review, li));
  }
  event.review = answer.body.review;
  paint(li, event);
  const now = event.review ? event.review.label : verdict(event);
  setState(li, "undone", "undone: " + named(now) + " again");
  toast(li, "item " + event.id + ": " + named(now) + " again", [], UNDO_MS / 2);
  refreshCounts();
}

// --- the photos -----------------------------------------------------------------------------

// As many pixels as the screen shows (CSS width × devicePixelRatio), in the bin's steps.
function thumbWidth(img) {
  const pixels = Math.ceil(img.getBoundingClientRect().width * (window.devicePixelRatio || 1));
  return Math.min(THUMB_MAX, Math.max(THUMB_STEP, Math.ceil(pixels / THUMB_STEP) * THUMB_STEP));
}

function loadThumbs(cards) {
  for (const li of cards) {
    const img = li.querySelector("img");
    if (img.dataset.src && !img.getAttribute("src")) img.src = img.dataset.src + "?w=" + thumbWidth(img);
  }
}

function view(event) { viewPhoto("/api/events/" + event.id + "/photo", "item " + event.id + ", the whole photo"); }

function viewPhoto(src, alt) {
  const img = $("viewer-photo");
  img.classList.remove("actual");
  img.src = src;
  img.alt = alt;
  $("viewer").showModal();
}

$("viewer-close").addEventListener("click", () => $("viewer").close());
$("viewer").addEventListener("click", (e) => { if (e.target === $("viewer")) $("viewer").close(); });
$("viewer-photo").addEventListener("click", () => $("viewer-photo").classList.toggle("actual"));  // fit, or every pixel
$("viewer").addEventListener("close", () => $("viewer-photo").removeAttribute("src"));

// --- the list -------------------------------------------------------------------------------

function place(body, append) {
  const cards = body.events.map(card);
  if (append) $("items").append(...cards);
  else { $("items").replaceChildren(...cards); pending = null; showNew(0); }
  loadThumbs(cards);
  oldest = body.next_before;
  $("more").hidden = oldest == null;
  say(!append && !cards.length ? (filter ? "no items here" : "no items yet") : "");
}

async function loadItems(append = false) {
  if (append && oldest == null) return;  // nothing older: the newest page again would repeat it
  const query = new URLSearchParams({ limit: PAGE });
  if (filter) query.set("filter", filter);
  if (append) query.set("before", oldest);
  place(await getJSON("/api/events?" + query), append);
}

function showNew(count, more = false) {
  $("new-items").hidden = !count;
  $("new-items").textContent = count + (more ? "+" : "") + " new item" + (count === 1 && !more ? "" : "s") + " ↑";
}

// New items wait behind the bar: the cards stay where the thumb is.
async function checkNew() {
  const query = new URLSearchParams({ limit: PAGE });
  if (filter) query.set("filter", filter);
  const body = await getJSON("/api/events?" + query);
  const top = $("items").firstElementChild;
  if (!top) return place(body, false);  // nothing to keep in place
  const newer = body.events.filter((e) => e.id > Number(top.dataset.id));
  pending = body;
  showNew(newer.length, newer.length === body.events.length && body.next_before != null);
}

$("new-items").addEventListener("click", () => {
  const top = $("items").firstElementChild;
  const body = pending;
  if (!body) return;
  const newer = body.events.filter((e) => !top || e.id > Number(top.dataset.id));
  if (newer.length === body.events.length) place(body, false);  // a gap past one page: start again
  else { const cards = newer.map(card); $("items").prepend(...cards); loadThumbs(cards); }
  pending = null;
  showNew(0);
  window.scrollTo(0, 0);
});

async function refreshCounts() {
  try {
    const counts = await getJSON("/api/counts");
    for (const button of document.querySelectorAll("#filters button")) {
      const count = counts[button.dataset.filter || "all"];
      button.querySelector(".count").textContent = count + (counts.capped ? "+" : "");
      button.title = counts.capped ? "of the newest " + counts.all + " items" : "";
    }
  } catch { /* the counts wait for the next item */ }
}

// --- the camera: the chamber now (a snapshot every SNAP_MS while shown), its empty reference --

const SNAP_MS = 1500;
let snapping = false;
let snapTimer;  // the one next snapshot: however often snap() is called, one chain of them
let liveUrl = null;  // the snapshot on screen, held by the page (it is fetched with the token)
let referenceShown;  // the date of the reference on screen

const cameraShown = () => location.hash === "#camera" && !document.hidden;

function showView() {
  const camera = location.hash === "#camera";
  $("camera").hidden = !camera;
  $("list").hidden = camera;
  $("camera-link").textContent = camera ? "items" : "camera";
  $("camera-link").href = camera ? "#" : "#camera";
  if (camera) { showReference(); snap(); }
}

// The live picture needs the token or a sign-in, as writes do: it may show the room, lid open.
async function snap() {
  if (snapping || !cameraShown()) return;
  clearTimeout(snapTimer);
  snapping = true;
  let again = true;
  try {
    const token = localStorage.getItem(TOKEN_KEY);
    const response = await fetch("/api/camera/snapshot", { cache: "no-store", headers: token ? { "Authorization": "Bearer " + token } : {} });
    if (response.ok) {
      const old = liveUrl;
      liveUrl = URL.createObjectURL(await response.blob());
      $("live").src = liveUrl;
      if (old) URL.revokeObjectURL(old);
      $("live-note").textContent = "now · " + new Date().toLocaleTimeString();
    } else {
      const body = await response.json().catch(() => ({}));
      $("live-note").textContent = (body.error || response.statusText) + (response.status === 401 ? " (tap the picture)" : "");
      again = response.status !== 401 && response.status !== 409;  // asking again would change nothing
    }
  } catch (error) {
    $("live-note").textContent = "the bin does not answer: " + error.message;
  } finally {
    snapping = false;
  }
  if (again) snapTimer = setTimeout(snap, SNAP_MS);
}

function showReference() {
  const reference = status && status.empty_reference;
  const taken = reference && reference.set ? reference.taken : null;
  if (taken === referenceShown) return;
  referenceShown = taken;
  if (taken) $("ref").src = "/api/camera/reference?taken=" + encodeURIComponent(taken);
  else $("ref").removeAttribute("src");
  $("ref-note").textContent = taken ? "empty reference · " + new Date(taken).toLocaleString()
    : "no reference yet" + (reference && reference.problem ? " (" + reference.problem + ")" : "");
}

async function askCamera(button, url, doing, done) {
  const message = $("camera-message");
  button.disabled = true;
  message.className = "";
  message.textContent = doing;
  try {
    const answer = await post(url, {});
    if (answer == null) message.textContent = "";
    else if (answer.response.ok) done(answer.body);
    else { message.className = "error"; message.textContent = answer.body.error; }
  } catch (error) {
    message.className = "error";
    message.textContent = "the bin does not answer: " + error.message;
  } finally {
    button.disabled = false;
  }
}

$("live").parentElement.addEventListener("click", () => {
  if (liveUrl) viewPhoto(liveUrl, "the chamber now");
  else if (askToken()) snap();
});
$("ref").parentElement.addEventListener("click", () => { if ($("ref").src) viewPhoto($("ref").src, "the empty reference"); });
$("calibrate").addEventListener("click", () => {
  if (!confirm("Store what the camera sees now as the empty chamber? Close the lid, and leave nothing inside.")) return;
  askCamera($("calibrate"), "/api/camera/calibrate", "taking the empty chamber…", (body) => {
    status.empty_reference = body.empty_reference;
    showReference();
    $("camera-message").textContent = "empty reference stored";
  });
});
$("test-item").addEventListener("click", () => askCamera($("test-item"), "/api/camera/test", "judging the chamber…", (body) => {
  const text = "test: " + named(verdict(body)) + (body.confidence == null ? "" : " " + Math.round(body.confidence * 100) + "%")
    + " → " + (body.compartment || "no move") + " (" + body.reason + (body.error ? ": " + body.error : "") + "); not moved, not recorded";
  $("camera-message").textContent = text;
  $("tested").hidden = !body.photo;
  $("tested").querySelector("img").src = body.photo || "";
}));
addEventListener("hashchange", showView);
document.addEventListener("visibilitychange", snap);

async function refresh() {
  try {
    const st = await getJSON("/api/status");
    showStatus(st);
    if (!$("camera").hidden) showReference();
    pageToast("");
    const last = st.last_item ? st.last_item.id : null;
    if (last !== lastItemId) {
      const first = lastItemId === undefined;
      lastItemId = last;
      if (first) await loadItems(); else await checkNew();
      await refreshCounts();
    }
  } catch (error) {
    pageToast("the bin does not answer: " + error.message);
  }
}

for (const button of document.querySelectorAll("#filters button")) {
  button.addEventListener("click", async () => {
    for (const other of document.querySelectorAll("#filters button")) other.classList.toggle("on", other === button);
    filter = button.dataset.filter;
    say("");
    await loadItems().catch((error) => say(error.message));
  });
}
$("more").addEventListener("click", () => loadItems(true).catch((error) => say(error.message)));

refresh().then(() => { showView(); document.body.dataset.ready = "1"; });
setInterval(refresh, 2000);
