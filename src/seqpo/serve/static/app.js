// seqpo live page: a simulated speaker (or your typing) feeds the WebSocket word by word; write
// events fill the subtitle line, done events move the sentence into the history.
"use strict";

const $ = (id) => document.getElementById(id);
const CHAR_SOURCES = new Set(["zh", "ja"]);
let ws = null;
let started = false;      // a start message was sent on this connection
let speaker = null;       // timer of the simulated speaker
let pieces = [];          // what the speaker still has to say: text pieces and "END" marks
let liveSent = "";        // what the live input box has sent so far

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${proto}://${location.host}/ws/translate`);
  ws.onopen = () => { setStatus("connected"); };
  ws.onclose = () => {
    started = false;
    stopSpeaker();
    setStatus("disconnected; reconnecting…", true);
    setTimeout(connect, 1000);
  };
  ws.onmessage = (msg) => handle(JSON.parse(msg.data));
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function sendStart() {
  send({ type: "start", pair: $("pair").value, policy: $("policy").value, k: Number($("k").value) });
  started = true;
}

function handle(ev) {
  if (ev.type === "ready") {
    setStatus(`ready: ${ev.pair}, ${ev.policy}${ev.policy === "wait-k" ? " k=" + ev.k : ""}`);
  } else if (ev.type === "write") {
    $("target").textContent = ev.target;
  } else if (ev.type === "done") {
    addHistory(ev);
    $("target").textContent = ev.prediction;
    $("lag").textContent = lagText(ev);
  } else if (ev.type === "error") {
    setStatus(`error (${ev.code}): ${ev.message}`, true);
  }
}

function lagText(ev) {
  if (ev.AL === null || ev.AL === undefined) return "– (nothing written)";
  const unit = CHAR_SOURCES.has($("pair").value.split("-")[0]) ? "chars" : "words";
  return `AL ${ev.AL.toFixed(2)} ${unit}, LAAL ${ev.LAAL.toFixed(2)}`;
}

function addHistory(ev) {
  const li = document.createElement("li");
  const src = document.createElement("div");
  src.className = "src";
  src.textContent = ev.source;
  const tgt = document.createElement("div");
  tgt.className = "tgt";
  tgt.textContent = ev.prediction || "(empty)";
  const lat = document.createElement("div");
  lat.className = "lat";
  lat.textContent = lagText(ev);
  li.append(src, tgt, lat);
  $("history").prepend(li);
}

// -- the simulated speaker ---------------------------------------------------------------------
function splitSentences(text) {
  const found = text.match(/[^.!?。！？\n]+[.!?。！？]*/g) || [];
  return found.map((s) => s.trim()).filter((s) => s.length > 0);
}

function speakerPieces(text, charSource) {
  const out = [];
  for (const sentence of splitSentences(text)) {
    const units = charSource ? Array.from(sentence) : sentence.split(/\s+/);
    units.forEach((u, i) => out.push(charSource || i === units.length - 1 ? u : u + " "));
    out.push("END");
  }
  return out;
}

function tick() {
  const piece = pieces.shift();
  if (piece === undefined) { stopSpeaker(); return; }
  if (piece === "END") {
    send({ type: "end" });
    $("source").textContent = "";
  } else {
    send({ type: "source", text: piece });
    $("source").textContent += piece;
  }
  const perMinute = Number($("speed").value);
  speaker = setTimeout(tick, 60000 / perMinute);
}

function startSpeaker() {
  stopSpeaker();
  sendStart();
  const charSource = CHAR_SOURCES.has($("pair").value.split("-")[0]);
  pieces = speakerPieces($("text").value, charSource);
  $("source").textContent = "";
  $("start").disabled = true;
  $("stop").disabled = false;
  tick();
}

function stopSpeaker() {
  if (speaker !== null) clearTimeout(speaker);
  speaker = null;
  // a sentence cut off mid-way still ends, so its translation finishes
  if ($("source").textContent) send({ type: "end" });
  $("source").textContent = "";
  pieces = [];
  $("start").disabled = false;
  $("stop").disabled = true;
}

// -- typing live -------------------------------------------------------------------------------
$("live").addEventListener("input", () => {
  const value = $("live").value;
  if (!value.startsWith(liveSent)) { liveSent = value; return; } // sent text cannot be taken back
  if (!started) sendStart();
  const delta = value.slice(liveSent.length);
  if (delta) send({ type: "source", text: delta });
  liveSent = value;
  $("source").textContent = value;
});
$("live").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || !$("live").value.trim()) return;
  send({ type: "end" });
  $("live").value = "";
  liveSent = "";
  $("source").textContent = "";
});

$("start").addEventListener("click", startSpeaker);
$("stop").addEventListener("click", stopSpeaker);
$("speed").addEventListener("input", () => { $("speed-value").textContent = `${$("speed").value} words/min`; });
for (const id of ["pair", "policy", "k"]) $(id).addEventListener("change", () => { if (started) sendStart(); });

fetch("/health").then((r) => r.json()).then((h) => {
  $("pair").value = h.pair;
  $("policy").value = h.policy;
}).catch(() => setStatus("server not answering", true));
connect();
