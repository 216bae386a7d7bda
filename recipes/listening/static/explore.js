// The explorer page: one request per change of clip, method or q; the server caches results.
"use strict";
const $ = (id) => document.getElementById(id);
let pending = 0;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function updateQState() {
  const soft = $("method").selectedOptions[0].dataset.mask === "soft";
  $("q").disabled = soft;
  $("q-value").textContent = soft ? "soft mask: q not used" : Number($("q").value).toFixed(2);
}

async function refresh() {
  updateQState();
  const ticket = ++pending;
  const params = new URLSearchParams({clip: $("clip").value, method: $("method").value, q: $("q").value});
  $("status").textContent = "Computing…";
  const started = performance.now();
  let body;
  try {
    const response = await fetch("/api/explore?" + params);
    body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
  } catch (error) {
    if (ticket === pending) { showError(error.message); $("status").textContent = ""; }
    return;
  }
  if (ticket !== pending) return;  // a newer request is on its way
  showError("");
  for (const kind of ["original", "interpretation", "removed"]) {
    const player = $("play-" + kind);
    if (player.getAttribute("src") !== body.urls[kind]) player.src = body.urls[kind];
  }
  $("picture").src = body.urls.png;
  $("axes").textContent = `Each panel: time 0 – ${body.duration_s.toFixed(1)} s from left to right, ` +
    `frequency 0 – ${body.max_khz} kHz from bottom to top.`;
  const rows = body.top.map((row) => `<tr><td>${row.class.replaceAll("_", " ")}</td><td>${row.probability.toFixed(3)}</td></tr>`);
  $("top").tBodies[0].innerHTML = rows.join("");
  $("share").textContent = `The mask keeps ${(100 * body.mask_share).toFixed(1)} % of the cells.`;
  const ms = Math.round(performance.now() - started);
  $("status").textContent = `${body.label}${body.quantile === null ? "" : ", q = " + body.quantile.toFixed(2)}: ` +
    (body.cached ? `from the cache (${ms} ms)` : `computed in ${ms} ms`);
  $("status").dataset.cached = body.cached;
  $("result").hidden = false;
}

async function upload() {
  const file = $("upload").files[0];
  if (!file) return;
  const data = new FormData();
  data.append("file", file);
  $("status").textContent = `Uploading ${file.name}…`;
  const response = await fetch("/api/upload", {method: "POST", body: data});
  const body = await response.json().catch(() => ({error: response.statusText}));
  $("upload").value = "";
  if (!response.ok) {
    const shown = $("result").hidden ? "" : ` (still showing ${$("clip").selectedOptions[0].text})`;
    showError(body.error + shown);
    $("status").textContent = "";
    return;
  }
  let option = [...$("clip").options].find((o) => o.value === body.clip);
  if (!option) {
    option = new Option(`${body.name} (your file)`, body.clip);
    $("clip").add(option, 0);
  }
  $("clip").value = body.clip;
  refresh();
}

$("clip").addEventListener("change", refresh);
$("method").addEventListener("change", refresh);
$("q").addEventListener("input", () => { $("q-value").textContent = Number($("q").value).toFixed(2); });
$("q").addEventListener("change", refresh);
$("upload").addEventListener("change", upload);
refresh();
