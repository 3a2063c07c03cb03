"""Long-form speech: a talk spoken with no sentence boundaries given, through the speech cascade,
scored with StreamLAAL in ms of audio (as IWSLT's simultaneous track scores speech input).

A stream of a `seqpo data long-form` file is spoken by joining the audio of its lines, one after
another, from a `seqpo data speech` folder made from the same source file (`NNNN.wav` is line NNNN;
its transcript in `source.en` must be the stream's sentence). Each reference sentence's place in
the talk is then exact: its offset is the audio before it, its length its own audio, in ms.

The cascade hears the whole talk at once (`SpeechCascade` with sentence splitting: a recognised
word ending in . ? ! with a pause after it, or `--max-sentence-units` words, ends a sentence
episode), so the
system's sentences are the ASR's, not the references'; mWER re-segmentation
(`metrics.resegment`) maps its output back onto the reference sentences. A written unit's delay is
the audio received when it was written, from the start of the talk; StreamLAAL_CA uses
`long_form.stream_clock` at 1 ms per unit: a step starts once its audio has arrived and the
previous step (ASR decoding since then included) is done. `SpokenStreams` is this kind of eval
input; it is scored as long-form text is (`long_form.StreamSet`), plus the stream-level WER.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.long_form import LongFormStream
from ..errors import InputFileError
from ..eval_source import EvalRun
from ..files import read_lines
from ..languages import LanguagePair
from ..long_form import StreamSet, stream_record
from ..metrics.stream_latency import StreamSentence
from ..metrics.wer import corpus_wer
from ..stream import Episode
from .asr import StreamingASR, streaming_asr
from .audio import AUDIO_SUFFIXES, ms_of, read_audio
from .cascade import SpeechCascade, stream_audio
from .translate import sentence_rows, speech_parts


@dataclass
class SpokenStream:
    """A long-form stream's audio (its lines' files, in order) and its reference sentences placed
    in it (ms). The samples are read when the stream is heard, so a set of many talks is not held
    in memory at once."""

    wavs: list[Path]
    sentences: list[StreamSentence]

    @property
    def ms(self) -> float:
        return self.sentences[-1].source_offset + self.sentences[-1].source_length

    def samples(self) -> np.ndarray:
        return np.concatenate([read_audio(wav) for wav in self.wavs]).astype(np.float32, copy=False)


def sentence_texts(stream: LongFormStream) -> list[str]:
    """The source sentences a word-unit stream was joined from."""
    words = stream.source.split()
    return [" ".join(words[o : o + n]) for o, n in zip(stream.source_offsets, stream.source_lengths)]


def spoken_streams(audio_dir: str | Path, streams: list[LongFormStream], pair: LanguagePair) -> dict[int, SpokenStream]:
    """Each stream's audio files, checked against its sentences and measured: every file is read
    (and every mismatch found) before any model loads."""
    folder = Path(audio_dir)
    if not folder.is_dir():
        raise InputFileError(f"audio folder not found: {folder}")
    wavs = {int(p.stem): p for p in folder.iterdir()
            if p.stem.isdigit() and p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()}
    transcripts_path = folder / f"source.{pair.source}"
    if not transcripts_path.is_file():
        raise InputFileError(f"{transcripts_path} not found: make the folder with `seqpo data speech` "
                             "from the --src the long-form file was built from")
    transcripts = read_lines(transcripts_path, "transcripts")
    spoken = {}
    for stream in streams:
        files, sentences, offset = [], [], 0.0
        for line, text, reference in zip(stream.lines, sentence_texts(stream), stream.references):
            if line not in wavs or line >= len(transcripts):
                raise InputFileError(f"stream {stream.index} needs line {line}, which {folder} has no audio for")
            if " ".join(transcripts[line].split()) != text:
                raise InputFileError(f"{folder}: line {line} says {transcripts[line][:60]!r}, but stream "
                                     f"{stream.index} has {text[:60]!r} there: not the same source file")
            ms = ms_of(len(read_audio(wavs[line])))
            files.append(wavs[line])
            sentences.append(StreamSentence(reference, offset, ms))
            offset += ms
        spoken[stream.index] = SpokenStream(files, sentences)
    return spoken


def run_spoken_streams(todo: list[int], spoken: dict[int, SpokenStream], settings, loaded,
                       done: Callable[[int, list[Episode], StreamingASR], None]) -> None:
    """Stream each talk in `todo` through the cascade; `done` gets each talk's sentence episodes
    (in order) and the ASR that heard it."""
    if not todo:
        return
    pair, policy, whisper, generator = speech_parts(settings, loaded)
    for index in todo:
        asr = streaming_asr(whisper, settings, pair.source)
        cascade = SpeechCascade(asr, pair, policy, generator, settings.chunk, max_units=settings.max_sentence_units,
                                **sentence_rows(settings, pair, generator))
        done(index, stream_audio(spoken[index].samples(), cascade, settings.audio_chunk), asr)


class SpokenStreams(StreamSet):
    """`--long-form` with `--audio-dir`: each stream heard as one recording; latency in ms of audio."""

    label = " long-form speech"
    speech = True
    clock_unit_ms = 1.0  # the delays are ms already
    computation_aware = ("clock: the talk's audio in real time, one step (ASR decoding since the last step "
                         "included) at a time")

    def __init__(self, settings, pair: LanguagePair) -> None:
        super().__init__(settings, pair)
        self.spoken = spoken_streams(settings.audio_dir, self.streams, pair)  # all checked before a model loads

    def talks(self) -> list[list[StreamSentence]]:
        return [self.spoken[s.index].sentences for s in self.streams]

    def input_signature(self) -> dict:
        return {"audio_dir": str(self.settings.audio_dir)}

    def asr_scores(self, records: list[dict]) -> dict:
        # recomputed from the records, so a resumed run scores alike
        return {"WER": round(corpus_wer([r["transcript"] for r in records], [s.source for s in self.streams],
                                        self.pair.source_unit), 2),  # characters for zh/ja (CER)
                "asr_seconds_per_stream": round(sum(r["asr_ms"] for r in records) / 1000 / len(records), 3)}

    def run(self, todo: list[int], run: EvalRun, write: Callable[[int, dict], None]) -> None:
        def heard(index: int, episodes: list[Episode], asr: StreamingASR) -> None:
            record = stream_record(index, [0] * len(episodes), episodes, run.pair.target_unit, speech=True)
            record.update(source_length=round(self.spoken[index].ms, 1),
                          transcript=" ".join(e.source for e in episodes),
                          asr_ms=round(asr.compute_ms, 1), asr_cpu_ms=round(asr.cpu_ms, 1), asr_decodes=asr.decodes)
            write(index, record)

        run_spoken_streams(todo, self.spoken, run.settings, run.loaded, heard)


__all__ = ["SpokenStream", "SpokenStreams", "run_spoken_streams", "sentence_texts", "spoken_streams"]
