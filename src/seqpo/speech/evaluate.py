"""`seqpo eval --audio-dir DIR`: a folder of audio files (one sentence each, in name order),
`source.en` (their transcripts, for WER) and `reference.<tgt>`, streamed through the speech
cascade. Instances follow SimulEval's speech-to-text log: `delays`, `elapsed` and
`source_length` in ms of audio (`read_delays` keeps the words read); scored as text sentences
are (`eval_sentences.SentenceSet`), with SimulEval's speech latency and the corpus WER of the ASR."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import InputFileError
from ..eval_sentences import SentenceSet
from ..eval_source import EvalRun
from ..files import load_parallel
from ..instances import instance_record
from ..languages import LanguagePair
from ..metrics.latency import computation_aware_delays, speech_latency_scores
from ..metrics.wer import corpus_wer, word_errors
from ..stream import Episode, count_units
from .asr import streaming_asr
from .audio import AUDIO_SUFFIXES, read_audio
from .cascade import SpeechCascade, stream_audio
from .translate import sentence_rows, speech_parts

SPEECH_LATENCY_KEYS = ("StartOffset", "EndOffset", "AL", "LAAL", "StartOffset_CA", "EndOffset_CA", "AL_CA",
                       "LAAL_CA")


def load_audio_set(audio_dir: str, pair: LanguagePair, src: str | None, ref: str | None,
                   limit: int | None) -> tuple[list[Path], list[str], list[str]]:
    """The audio files (name order), their transcripts and references, checked to align."""
    folder = Path(audio_dir)
    if not folder.is_dir():
        raise InputFileError(f"audio folder not found: {folder}")
    wavs = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not wavs:
        raise InputFileError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    src = src or folder / f"source.{pair.source}"
    ref = ref or folder / f"reference.{pair.target}"
    transcripts, references = load_parallel(src, ref)
    if len(transcripts) != len(wavs):
        raise InputFileError(f"{folder} has {len(wavs)} audio files but {src} has {len(transcripts)} lines")
    if limit:
        wavs, transcripts, references = wavs[:limit], transcripts[:limit], references[:limit]
    return wavs, transcripts, references


def speech_instance_record(index: int, episode: Episode, words: list, reference: str, transcript: str,
                           wav: Path) -> dict:
    record = instance_record(index, episode, reference, unit_ms=1.0)
    delays = episode.audio_delays()
    elapsed = computation_aware_delays(delays, episode.elapsed(), 1.0)
    errors, n = word_errors(episode.source, transcript, episode.source_unit)  # characters for zh/ja
    record.update(
        audio=str(wav), transcript=transcript, read_delays=record["delays"], delays=delays, elapsed=elapsed,
        source_length=episode.source_ms, asr_words=[w.to_dict() for w in words],
        metric={**speech_latency_scores(delays, elapsed, episode.source_ms,
                                        count_units(reference, episode.target_unit)),
                "WER": 100.0 * errors / max(1, n)},
    )
    return record


def run_audio_set(todo: list[int], wavs: list[Path], transcripts: list[str], references: list[str],
                  settings, loaded, write: Callable[[int, dict], None]) -> None:
    """Stream every wav in `todo` through the cascade, one sentence per file; `write` gets each
    finished instance record."""
    for i in todo:  # every file is read before any model loads
        read_audio(wavs[i])
    if not todo:
        return
    pair, policy, whisper, generator = speech_parts(settings, loaded)
    for i in todo:
        asr = streaming_asr(whisper, settings, pair.source)
        done: list = []
        cascade = SpeechCascade(asr, pair, policy, generator, settings.chunk, split_sentences=False,
                                on_done=lambda episode, words: done.append((episode, words)),
                                **sentence_rows(settings, pair, generator))
        stream_audio(read_audio(wavs[i]), cascade, settings.audio_chunk)
        if done:
            episode, words = done[0]
        else:  # nothing recognised: an empty prediction, no latency
            episode, words = Episode(source="", source_unit=pair.source_unit, target_unit=pair.target_unit,
                                     audio_span=(0.0, asr.received_ms)), []
        record = speech_instance_record(i, episode, words, references[i], transcripts[i], wavs[i])
        record.update(asr_ms=asr.compute_ms, asr_cpu_ms=asr.cpu_ms, asr_decodes=asr.decodes)
        write(i, record)


class SpokenSentences(SentenceSet):
    """`--audio-dir`: a sentence per audio file, heard by the cascade one at a time."""

    speech = True
    latency_keys = SPEECH_LATENCY_KEYS

    def __init__(self, settings, pair: LanguagePair) -> None:
        super().__init__(settings, pair)
        self.wavs, self.transcripts, self.references = load_audio_set(settings.audio_dir, pair, settings.src,
                                                                      settings.ref, settings.limit)

    def add_computation_aware(self, records: list[dict], unit_ms: float) -> None:
        pass  # speech latency is measured in ms of audio as the records were made, not simulated

    def ca_delays(self, record: dict, unit_ms: float) -> list[float]:
        return record["elapsed"]  # a speech record's `elapsed` holds them already (SimulEval's speech log)

    def asr_scores(self, records: list[dict]) -> dict:
        # recomputed, like CA latency, so a resume scores alike
        return {"WER": round(corpus_wer([r["source"] for r in records], [r["transcript"] for r in records],
                                        self.pair.source_unit), 2)}  # characters for zh/ja (CER)

    def run(self, todo: list[int], run: EvalRun, write: Callable[[int, dict], None]) -> None:
        run_audio_set(todo, self.wavs, self.transcripts, self.references, run.settings, run.loaded, write)


__all__ = ["SPEECH_LATENCY_KEYS", "SpokenSentences", "load_audio_set", "run_audio_set", "speech_instance_record"]
