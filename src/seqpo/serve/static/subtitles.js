// Subtitle files of a live session (SubRip .srt, WebVTT .vtt), built from its events: one cue per
// translated sentence, from its first write to its last, in source time: ms of audio (audio_ms), or
// for text the speaker's clock (source units read, at the speaker's speed). The rules are those of
// seqpo.subtitles (episode_cues, place_cues, format_subtitles), written out here because the page has
// no build step and no dependencies; tests/test_serve_browser.py reads the files back with a parser.
"use strict";

const MIN_CUE_MS = 1000;  // seqpo.subtitles.MIN_CUE_MS: the shortest cue
const SPACE = /[\s\x1c-\x1f\x85]/u;  // what Python's str.isspace counts

class SessionSubtitles {
  constructor(audio, charSource) {
    this.audio = audio;            // events carry audio_ms; else text, timed by the speaker's clock
    this.charSource = charSource;  // zh/ja source: a source unit is a character
    this.sentences = new Map();    // sentence number -> {writes: [times], shown, done}
    this.endMs = 0;                // audio: the latest audio time heard of
  }

  record(ev) {
    if (ev.type === "audio_end") this.endMs = Math.max(this.endMs, ev.audio_ms);
    if (ev.sentence === undefined || !["write", "update", "done"].includes(ev.type)) return;
    if (!this.sentences.has(ev.sentence)) this.sentences.set(ev.sentence, { writes: [], shown: "", done: null });
    const s = this.sentences.get(ev.sentence);
    const time = this.audio ? ev.audio_ms : ev.read;  // ms of audio, or source units of the sentence read
    if (this.audio && ev.audio_ms !== undefined) this.endMs = Math.max(this.endMs, ev.audio_ms);
    if (ev.type === "write" && ev.text.trim()) s.writes.push(time);
    if (ev.type === "update") {  // re-translation: the updates that changed what is shown
      if (ev.display !== s.shown) s.writes.push(time);
      s.shown = ev.display;
    }
    if (ev.type === "done") s.done = ev;
  }

  // the cues; text is timed at unitMs per source unit
  cues(unitMs) {
    const spans = [];
    let offset = 0;  // text: source units of the sentences before
    for (const n of [...this.sentences.keys()].sort((a, b) => a - b)) {
      const s = this.sentences.get(n);
      if (!s.done) continue;
      const at = (t) => (this.audio ? t : (offset + t) * unitMs);
      const text = cueText(s.done.prediction);
      if (s.writes.length && text) spans.push([at(s.writes[0]), at(s.writes[s.writes.length - 1]), text]);
      if (!this.audio) offset += countUnits(s.done.source, this.charSource);
    }
    return placeCues(spans, this.audio ? this.endMs : offset * unitMs);
  }

  file(format, unitMs) {
    const vtt = format === "vtt";
    // WebVTT cue text is HTML-like: & < > are escaped (SRT has no escapes)
    const escape = (t) => t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    const sep = vtt ? "." : ",";
    const blocks = this.cues(unitMs).map((c, i) =>
      `${i + 1}\n${stamp(c.start, sep)} --> ${stamp(c.end, sep)}\n${vtt ? escape(c.text) : c.text}\n\n`);
    return (vtt ? "WEBVTT\n\n" : "") + blocks.join("");
  }
}

// control characters dropped, whitespace runs as one space (seqpo.subtitles.cue_text)
function cueText(prediction) {
  const kept = Array.from(prediction || "").filter((c) => SPACE.test(c) || !/\p{Cc}/u.test(c));
  return kept.join("").split(new RegExp(SPACE.source + "+", "u")).filter((w) => w).join(" ");
}

function countUnits(text, charSource) {
  const units = charSource ? Array.from(text) : text.split(SPACE);
  return units.filter((u) => u && !SPACE.test(u)).length;
}

// seqpo.subtitles.place_cues: at least minMs each (less only when endMs leaves too little room), in
// order, an earlier cue clipped where the next starts, and all pulled back inside [0, endMs]
function placeCues(spans, endMs) {
  if (!spans.length) return [];
  const min = Math.min(MIN_CUE_MS, endMs / spans.length);
  const starts = spans.map((s) => Math.max(0, s[0]));
  const ends = spans.map((s) => s[1]);
  for (let i = 0; i < spans.length; i++) {
    if (i) starts[i] = Math.max(starts[i], starts[i - 1] + min);
    ends[i] = Math.max(ends[i], starts[i] + min);
  }
  for (let i = 0; i + 1 < spans.length; i++) ends[i] = Math.min(ends[i], starts[i + 1]);
  let limit = endMs;
  for (let i = spans.length - 1; i >= 0; i--) {
    ends[i] = Math.min(ends[i], limit);
    starts[i] = Math.min(starts[i], ends[i] - min);
    limit = starts[i];
  }
  // whole ms, cut downwards (no cue ends after the source; cues that touch still touch)
  return spans.map((s, i) => ({ start: Math.floor(starts[i]), end: Math.floor(ends[i]), text: s[2] }));
}

function stamp(ms, sep) {
  const pad = (x, n = 2) => String(x).padStart(n, "0");
  const h = Math.floor(ms / 3600000), m = Math.floor(ms / 60000) % 60, s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)}${sep}${pad(ms % 1000, 3)}`;
}

// the browser saves the file (a download of a blob made here)
function saveSubtitles(subtitles, format, unitMs) {
  const type = format === "vtt" ? "text/vtt;charset=utf-8" : "application/x-subrip;charset=utf-8";
  const url = URL.createObjectURL(new Blob([subtitles.file(format, unitMs)], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `seqpo-subtitles.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
