// A participant's trial page: loads the state, commits each answer at once, then moves on.
"use strict";
const $ = (id) => document.getElementById(id);
const participant = $("trial").dataset.participant;
localStorage.setItem("listen-participant", participant);
let current = null;

function showError(message) { $("error").textContent = message; $("error").hidden = !message; }

async function post(path, fields) {
  const response = await fetch(path, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({participant, ...fields}),
  });
  const body = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(body.error);
  return body;
}

function letter(index) { return String.fromCharCode(65 + index); }

function stimulus(slot) { return `/stimulus/${participant}/${current.position}/${slot}`; }

function updateNext() {
  let ready, hint;
  if (current.kind === "mushra") {
    const missing = current.ratings.filter((r) => r === null).length;
    ready = missing === 0;
    hint = ready ? "" : `Rate ${missing} more sound${missing > 1 ? "s" : ""} to go on.`;
  } else {
    ready = current.choice !== null;
    hint = ready ? "" : "Choose A or B to go on.";
  }
  $("next").disabled = !ready;
  $("next-hint").textContent = hint;
}

function renderMushra() {
  $("reference").src = stimulus("reference");
  const body = $("slots").tBodies[0];
  body.innerHTML = "";
  current.ratings.forEach((rating, slot) => {
    const row = body.insertRow();
    row.className = "slot";
    row.innerHTML = `<th class="slot-name">${letter(slot)}</th>
      <td><audio controls preload="auto" src="${stimulus(slot)}"></audio></td>
      <td class="slider"><input type="range" min="0" max="100" step="1" aria-label="rating of ${letter(slot)}"
        value="${rating === null ? 50 : rating}" data-slot="${slot}"></td>
      <td class="value">${rating === null ? "not rated" : rating}</td>`;
    if (rating === null) row.classList.add("unrated");
    const input = row.querySelector("input");
    input.addEventListener("input", () => { row.querySelector(".value").textContent = input.value; });
    // a click on the thumb without moving it rates too (an unrated slider sits at 50)
    const commit = async () => {
      if (current.ratings[slot] === Number(input.value)) return;
      try {
        await post("/api/rate", {trial: current.position, slot, rating: Number(input.value)});
        current.ratings[slot] = Number(input.value);
        row.classList.remove("unrated");
        row.querySelector(".value").textContent = input.value;
        showError("");
      } catch (error) { showError(error.message); }
      updateNext();
    };
    for (const event of ["change", "pointerup", "keyup"]) input.addEventListener(event, commit);
  });
}

function renderAB() {
  $("ab-reference").src = stimulus("reference");
  for (const slot of [0, 1]) $("ab-" + slot).src = stimulus(slot);
  document.querySelectorAll("input[name=choice]").forEach((radio) => {
    radio.checked = current.choice !== null && Number(radio.value) === current.choice;
    radio.onchange = async () => {
      try {
        await post("/api/choose", {trial: current.position, slot: Number(radio.value)});
        current.choice = Number(radio.value);
        showError("");
      } catch (error) { showError(error.message); }
      updateNext();
    };
  });
}

async function load() {
  const response = await fetch(`/api/state/${participant}`);
  const state = await response.json();
  if (!response.ok) { showError(state.error); return; }
  current = state.current;
  if (!current) {
    for (const id of ["mushra", "ab", "next", "question", "next-hint"]) $(id).hidden = true;
    $("progress").textContent = `${state.n_trials} of ${state.n_trials} done`;
    $("done").hidden = false;
    return;
  }
  $("progress").textContent = `Page ${state.finished + 1} of ${state.n_trials}`;
  $("question").textContent = current.question;
  $("mushra").hidden = current.kind !== "mushra";
  $("ab").hidden = current.kind !== "ab";
  if (current.kind === "mushra") renderMushra(); else renderAB();
  updateNext();
  window.scrollTo(0, 0);
}

$("next").addEventListener("click", async () => {
  $("next").disabled = true;
  try {
    await post("/api/finish", {trial: current.position});
    showError("");
  } catch (error) { showError(error.message); }
  load();
});
load();
