// The review page: live status, recent items, and relabelling (with the token kept in localStorage).
"use strict";

const TOKEN_KEY = "smartbin-token";
const PAGE = 24;
const $ = (id) => document.getElementById(id);
let status = null;
let filter = "";
let lastItemId;  // undefined: nothing shown yet
let oldest = null;

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
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
  const faults = Object.entries(st.faults || {}).map(([kind, count]) => kind + " " + count);
  $("faults").textContent = faults.length ? faults.join(", ") + " (items since start)" : "none since start";
  $("faults").className = faults.length ? "fault" : "";
  const rows = [];
  const fill = st.fill || {};
  for (const [name, total] of Object.entries(st.counts.total)) {
    const level = fill[name];
    const tr = document.createElement("tr");
    const cells = [name, st.counts.today[name], total, level && level.percent != null ? Math.round(level.percent) + "%" + (level.full ? " FULL" : "") : "–"];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    if (level && level.full) tr.lastChild.className = "full";
    rows.push(tr);
  }
  $("counts").tBodies[0].replaceChildren(...rows);
  const warnings = [...(st.warnings || [])];
  for (const [key, count] of Object.entries((st.observers || {}).failures || {})) warnings.push("observer " + key + " failed " + count + " time(s)");
  $("warnings").replaceChildren(...warnings.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
}

function card(event) {
  const li = $("item").content.firstElementChild.cloneNode(true);
  li.dataset.id = event.id;
  const uncertain = event.reason === "low_confidence";
  const said = event.label || (event.reason === "empty" ? "empty" : null);  // the bin's verdict
  const reviewed = event.review ? event.review.label : null;
  li.classList.toggle("uncertain", uncertain);
  li.classList.toggle("wrong", reviewed != null && reviewed !== said);
  const img = li.querySelector("img");
  if (event.photo) { img.src = "/api/events/" + event.id + "/photo?w=160"; img.alt = "item " + event.id; }
  else img.alt = "no photo";
  li.querySelector(".label").textContent = said || "no frame";
  li.querySelector(".confidence").textContent = event.confidence == null ? "" : Math.round(event.confidence * 100) + "%";
  li.querySelector(".compartment").textContent = event.compartment || "no move";
  li.querySelector(".reason").textContent = event.reason + (event.error ? " (" + event.error + ")" : "");
  li.querySelector(".latency").textContent = event.latency_ms.toFixed(0) + " ms";
  const time = li.querySelector("time");
  time.dateTime = event.ts;
  time.textContent = new Date(event.ts).toLocaleString();
  const review = li.querySelector(".review");
  review.textContent = reviewed ? "reviewed: " + reviewed.replace("_", " ") : "not reviewed";
  review.classList.toggle("done", reviewed != null);
  for (const label of status.review_labels) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = label;
    button.textContent = label.replace("_", " ");
    button.classList.toggle("chosen", label === reviewed);
    button.addEventListener("click", () => relabel(event, label, li));
    li.querySelector(".choices").append(button);
  }
  return li;
}

async function relabel(event, label, li) {
  let token = localStorage.getItem(TOKEN_KEY);
  if (!token && !status.signed_in) {  // a sign-in link's cookie (smartbin web link) needs no token
    token = (prompt("The bin's token (smartbin web token) to relabel items, or open a sign-in link (smartbin web link):") || "").trim();
    if (!token) return;
    localStorage.setItem(TOKEN_KEY, token);
  }
  const response = await fetch("/api/events/" + event.id + "/label", {
    method: "POST",
    headers: { "Content-Type": "application/json", ...(token && { "Authorization": "Bearer " + token }) },
    body: JSON.stringify({ label }),
  });
  const body = await response.json();
  if (response.status === 401) localStorage.removeItem(TOKEN_KEY);  // asked again next time
  if (!response.ok) { say("item " + event.id + ": " + body.error, true); return; }
  event.review = body.review;
  li.replaceWith(card(event));
  say("item " + event.id + " is " + label.replace("_", " "));
}

async function loadItems(append = false) {
  if (append && oldest == null) return;  // nothing older: the newest page again would repeat it
  const query = new URLSearchParams({ limit: PAGE });
  if (filter) query.set("filter", filter);
  if (append) query.set("before", oldest);
  const body = await getJSON("/api/events?" + query);
  const cards = body.events.map(card);
  if (append) $("items").append(...cards); else $("items").replaceChildren(...cards);
  oldest = body.next_before;
  $("more").hidden = oldest == null;
  if (!append && !cards.length) say(filter ? "no items here" : "no items yet");
}

async function refresh() {
  try {
    const st = await getJSON("/api/status");
    showStatus(st);
    const last = st.last_item ? st.last_item.id : null;
    if (last !== lastItemId) {
      lastItemId = last;
      if (!$("items").children.length || $("items").firstElementChild.dataset.id != last) await loadItems();
    }
  } catch (error) {
    say("the bin does not answer: " + error.message, true);
  }
}

for (const button of document.querySelectorAll("#filters button")) {
  button.addEventListener("click", async () => {
    for (const other of document.querySelectorAll("#filters button")) other.classList.toggle("on", other === button);
    filter = button.dataset.filter;
    say("");
    await loadItems().catch((error) => say(error.message, true));
  });
}
$("more").addEventListener("click", () => loadItems(true).catch((error) => say(error.message, true)));

refresh().then(() => document.body.dataset.ready = "1");
setInterval(refresh, 2000);
