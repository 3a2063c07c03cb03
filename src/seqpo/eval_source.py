"""What a kind of `seqpo eval` input supplies to the one evaluator (`evaluate.evaluate`): its inputs
read into numbered items, how those run into finished records, and the scores of the records. The
evaluator does the rest, once for every kind (validation, chat template, run settings, resume,
model and engine, progress, fsync'd writes, the signature), as SimulEval's evaluator owns I/O and
logging whatever the agent.

The kinds: `eval_sentences.TextSentences` (`--src/--ref`), `speech.evaluate.SpokenSentences`
(`--audio-dir`), `long_form.TextStreams` (`--long-form`) and `speech.long_form.SpokenStreams`
(`--long-form --audio-dir`). A new kind is one `EvalSource` subclass and a case in
`evaluate.eval_source`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .languages import LanguagePair
from .policies.base import Policy


@dataclass
class EvalRun:
    """What the evaluator hands a kind to run and score with: the settings as resolved (chat
    template on/off, batch size), the pair and policy, and the text model side (`loaded`, and an
    `engine` on it; both None for speech kinds, whose cascade loads its own, or where nothing is
    left to run)."""

    settings: object
    pair: LanguagePair
    policy: Policy
    loaded: object = None
    engine: object = None


@dataclass
class EvalScores:
    """A kind's scores of its records, laid out as `scores.json` has them: `values` first, then the
    signature (the shared settings, `sacrebleu`'s signatures, then `signature`'s keys), then `asr`
    (a speech kind's WER and ASR time)."""

    values: dict
    sacrebleu: dict
    signature: dict
    asr: dict = field(default_factory=dict)


class EvalSource(ABC):
    """One kind of eval input. The constructor reads and checks every input (each error a one-line
    `InputFileError`) before any model loads; `keys` numbers its items, in order."""

    log: str  # OUT/<log>: one finished record per line, appended as it finishes (what a resume keeps)
    unit: str  # what one record is ("sentence", "stream"): `wall_seconds_per_<unit>`
    progress_unit: str  # the progress bar's unit
    label: str = ""  # added to the progress bar's description
    # heard by the speech cascade: one sentence at a time, its own model loading (no text engine),
    # latency in ms of audio, the ASR's settings in the run settings and the signature
    speech: bool = False
    keys: list[int]

    def __init__(self, settings, pair: LanguagePair) -> None:
        self.settings, self.pair = settings, pair

    @abstractmethod
    def input_settings(self) -> dict:
        """The run settings that name the inputs (a resume with other inputs is refused)."""

    def needs_model(self, todo: list[int]) -> bool:
        """Whether running `todo` needs the text model (speech kinds: never; the cascade loads it)."""
        return bool(todo) and not self.speech

    @abstractmethod
    def run(self, todo: list[int], run: EvalRun, write: Callable[[int, dict], None]) -> None:
        """Run the items `todo`; `write(key, record)` each finished record (in any order)."""

    def asr_scores(self, records: list[dict]) -> dict:
        """A speech kind's scores of its ASR (WER, ASR time), recomputed from the records so a
        resumed run scores alike; none for text."""
        return {}

    @abstractmethod
    def score(self, records: list[dict], run: EvalRun, out: Path) -> EvalScores:
        """The scores of every record (in `keys` order, resumed ones too); extra files go in `out`."""
