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
let subtitles = newSubtitles(false);  // the session's cues (subtitles.js)

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
    stopMic(false);
    setStatus("disconnected; reconnecting…", true);
    setTimeout(connect, 1000);
  };
  ws.onmessage = (msg) => handle(JSON.parse(msg.data));
}

function send(obj) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
}

function sendStart() {
  send({ type: "start", pair: $("pair").value, policy: $("policy").value, k: Number($("k").value),
         long_form: $("long-form").checked });
  started = true;
  subtitles = newSubtitles(false);
}

// a new session (a start, an upload) starts new subtitles
function newSubtitles(audio) {
  const made = new SessionSubtitles(audio, CHAR_SOURCES.has($("pair").value.split("-")[0]));
  showSubtitles(made);
  return made;
}

function showSubtitles(subs) {
  const cues = subs.cues(speakerUnitMs()).length;
  for (const id of ["subs-srt", "subs-vtt"]) $(id).disabled = cues === 0;
  $("subs-info").textContent = cues ? `${cues} cue(s), ${subs.audio ? "in audio time" : "on the speaker's clock"}`
    : "none yet: they fill in as sentences are translated";
}

function speakerUnitMs() { return 60000 / Number($("speed").value); }

function handle(ev) {
  subtitles.record(ev);
  if (ev.type === "done" || ev.type === "audio_end") showSubtitles(subtitles);
  if (ev.type === "ready") {
    setStatus(`ready: ${ev.pair}, ${ev.policy}${ev.policy === "wait-k" ? " k=" + ev.k : ""}` +
              `${ev.long_form ? ", long-form" : ""}`);
  } else if (ev.type === "write") {
    $("target").textContent = ev.target;
  } else if (ev.type === "update") {  // re-translation: the whole translation, replacing what is shown
    $("target").textContent = ev.display;
  } else if (ev.type === "word") {
    showWord(ev);
  } else if (ev.type === "done") {
    addHistory(ev);
    $("target").textContent = ev.prediction;
    $("lag").textContent = lagText(ev);
    if (ev.sentence === wordSentence) $("source").textContent = "";
    else dropShownSource(ev.source);
  } else if (ev.type === "stream_end") {  // long-form: every sentence of the stream is over
    setStatus(`stream ended: ${ev.sentences} sentence(s) translated` + (ev.dropped ? `, ${ev.dropped} dropped` : ""));
  } else if (ev.type === "audio_end") {
    $("audio-info").textContent = `audio ended: ${(ev.audio_ms / 1000).toFixed(1)} s, ${ev.sentences} sentence(s)`;
  } else if (ev.type === "error") {
    setStatus(`error (${ev.code}): ${ev.message}`, true);
  }
}

function lagText(ev) {
  if (ev.AL === null || ev.AL === undefined) return "– (nothing written)";
  if (ev.latency_unit === "ms") return `AL ${Math.round(ev.AL)} ms, LAAL ${Math.round(ev.LAAL)} ms of audio`;
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

// long-form: the server closed a sentence of the stream; the source line keeps what follows it
function dropShownSource(source) {
  const shown = $("source").textContent.trimStart();
  if (source && shown.startsWith(source)) $("source").textContent = shown.slice(source.length).trimStart();
}

function speakerPieces(text, charSource, longForm) {
  const out = [];
  if (longForm) {  // one stream, one end: the server finds the sentences
    const units = charSource ? Array.from(text.trim()) : text.trim().split(/\s+/).filter((u) => u);
    units.forEach((u, i) => out.push(charSource || i === units.length - 1 ? u : u + " "));
    out.push("END");
    return out;
  }
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
  stopMic();
  stopSpeaker();
  sendStart();
  const charSource = CHAR_SOURCES.has($("pair").value.split("-")[0]);
  pieces = speakerPieces($("text").value, charSource, $("long-form").checked);
  $("source").textContent = "";
  $("start").disabled = true;
  $("stop").disabled = false;
  tick();
}

function stopSpeaker() {
  const speaking = speaker !== null;
  if (speaker !== null) clearTimeout(speaker);
  speaker = null;
  // a sentence cut off mid-way still ends, so its translation finishes
  if (speaking && $("source").textContent) send({ type: "end" });
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

// -- speech: the microphone (16 kHz 16-bit PCM over the WebSocket) and uploaded recordings --------
const RATE = 16000;
const FRAME_SAMPLES = RATE / 2; // 0.5 s per binary frame
let mic = null;                 // {stream, ctx, node, resampler}
let pcm = [];                   // samples (int16) not sent yet
let wordSentence = 0;           // sentence of the words now on the source line

function showWord(ev) {
  if (ev.sentence !== wordSentence) { wordSentence = ev.sentence; $("source").textContent = ""; }
  const line = $("source").textContent;
  $("source").textContent = line ? `${line} ${ev.text}` : ev.text;
  // how far transcription trails the microphone (the server catches up by decoding more at once)
  if (mic && ev.asr_lag_ms !== undefined) {
    $("audio-info").textContent = `listening… ASR lag ${(ev.asr_lag_ms / 1000).toFixed(1)} s`;
  }
}

function toInt16(x) {
  const s = Math.max(-1, Math.min(1, x));
  return s < 0 ? s * 32768 : s * 32767;
}

// linear interpolation from the context's rate to 16 kHz, across block boundaries
function makeResampler(from) {
  const step = from / RATE;
  let pos = 0;        // next output position, in input samples from the start of `prev`
  let prev = null;    // last input sample of the previous block
  return (block) => {
    if (from === RATE) return block;
    const data = prev === null ? block : Float32Array.of(prev, ...block);
    const out = [];
    while (pos + 1 < data.length) {
      const i = Math.floor(pos), f = pos - i;
      out.push(data[i] * (1 - f) + data[i + 1] * f);
      pos += step;
    }
    pos -= data.length - 1;
    prev = data[data.length - 1];
    return Float32Array.from(out);
  };
}

function pushSamples(block) {
  if (!mic) return;
  for (const x of mic.resampler(block)) pcm.push(toInt16(x));
  while (pcm.length >= FRAME_SAMPLES) sendPcm(pcm.splice(0, FRAME_SAMPLES));
}

function sendPcm(samples) {
  if (ws && ws.readyState === WebSocket.OPEN && samples.length) ws.send(Int16Array.from(samples).buffer);
}

async function startMic() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    setStatus("no microphone access here (the page needs localhost or https)", true);
    return;
  }
  stopSpeaker();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
  } catch (err) {
    setStatus(`microphone refused: ${err.message || err}`, true);
    return;
  }
  let ctx = new AudioContext({ sampleRate: RATE }); // the browser resamples the microphone to 16 kHz
  let source;
  try {
    source = ctx.createMediaStreamSource(stream);
  } catch (err) {  // browsers that cannot resample a stream: the device rate, resampled here
    ctx.close();
    ctx = new AudioContext();
    source = ctx.createMediaStreamSource(stream);
  }
  send({ type: "start", input: "audio", sample_rate: RATE, pair: $("pair").value, policy: $("policy").value,
         k: Number($("k").value) });
  started = true;
  subtitles = newSubtitles(true);
  pcm = [];
  mic = { stream, ctx, node: null, resampler: makeResampler(ctx.sampleRate) };
  let node;
  if (ctx.audioWorklet) {
    await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
    node = new AudioWorkletNode(ctx, "pcm-capture");
    node.port.onmessage = (e) => pushSamples(e.data);
  } else {
    node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => pushSamples(e.inputBuffer.getChannelData(0).slice());
  }
  source.connect(node);
  node.connect(ctx.destination); // pulls the graph; the capture node outputs silence
  mic.node = node;
  $("mic").textContent = "Stop microphone";
  $("mic").classList.add("on");
  $("audio-info").textContent = "listening…";
}

function stopMic(sendEnd = true) {
  if (!mic) return;
  const { stream, ctx } = mic;
  if (sendEnd) {
    sendPcm(pcm);
    send({ type: "end" });  // the server flushes the last words
  }
  pcm = [];
  mic = null;
  stream.getTracks().forEach((t) => t.stop());
  ctx.close();
  $("mic").textContent = "Microphone";
  $("mic").classList.remove("on");
}

function wavBlob(samples) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE");
  text(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, RATE, true); view.setUint32(28, RATE * 2, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, toInt16(x), true));
  return new Blob([view], { type: "audio/wav" });
}

async function uploadFile(file) {
  $("audio-info").textContent = `decoding ${file.name}…`;
  let audio;
  try {  // any format the browser reads, decoded straight to 16 kHz; channels averaged
    audio = await new OfflineAudioContext(1, 1, RATE).decodeAudioData(await file.arrayBuffer());
  } catch (err) {
    setStatus(`cannot decode ${file.name}: ${err.message || err}`, true);
    return;
  }
  const mono = new Float32Array(audio.length);
  for (let c = 0; c < audio.numberOfChannels; c++) {
    audio.getChannelData(c).forEach((x, i) => { mono[i] += x / audio.numberOfChannels; });
  }
  const form = new FormData();
  form.append("file", wavBlob(mono), file.name.replace(/\.[^.]*$/, "") + ".wav");
  form.append("pair", $("pair").value);
  form.append("policy", $("policy").value);
  form.append("k", $("k").value);
  $("audio-info").textContent = `translating ${(audio.duration).toFixed(1)} s of ${file.name}…`;
  const response = await fetch("/translate/audio", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) { handle(body); $("audio-info").textContent = "upload failed"; return; }
  subtitles = newSubtitles(true);
  for (const ev of body.trace) if (ev.type !== "write") handle(ev); else subtitles.record(ev);
  subtitles.record({ type: "audio_end", audio_ms: body.audio_ms });
  showSubtitles(subtitles);
  $("source").textContent = body.transcript;
  $("audio-info").textContent = `${file.name}: ${(body.audio_ms / 1000).toFixed(1)} s of audio translated in ` +
    `${(body.wall_ms / 1000).toFixed(1)} s, ${body.sentences.length} sentence(s)`;
}

$("mic").addEventListener("click", () => { if (mic) stopMic(); else startMic(); });
$("audio-file").addEventListener("change", () => {
  const file = $("audio-file").files[0];
  if (file) uploadFile(file).catch((err) => setStatus(`upload failed: ${err.message || err}`, true));
});

$("start").addEventListener("click", startSpeaker);
$("subs-srt").addEventListener("click", () => saveSubtitles(subtitles, "srt", speakerUnitMs()));
$("subs-vtt").addEventListener("click", () => saveSubtitles(subtitles, "vtt", speakerUnitMs()));
$("stop").addEventListener("click", stopSpeaker);
$("speed").addEventListener("input", () => { $("speed-value").textContent = `${$("speed").value} words/min`; });
for (const id of ["pair", "policy", "k", "long-form"]) {
  $(id).addEventListener("change", () => { if (started && !mic) sendStart(); });
}

fetch("/health").then((r) => r.json()).then((h) => {
  $("pair").value = h.pair;
  $("policy").value = h.policy;
}).catch(() => setStatus("server not answering", true));
connect();
