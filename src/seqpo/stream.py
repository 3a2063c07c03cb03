"""The streaming episode: a source split into reads, and the record of each read/write step.

SeqPO-SiMT (arXiv 2505.20622, sec. 3.1): at step t the policy has read source chunks 1..t and
writes a target segment y_t (empty = wait). These records are plain data so an episode can be
scored, replayed or trained on without a model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


def split_units(text: str, unit: str) -> list[str]:
    """Split text into latency units: whitespace words, or non-space characters for zh/ja."""
    if unit == "char":
        return [c for c in text if not c.isspace()]
    if unit == "word":
        return text.split()
    raise ValueError(f"unknown unit {unit!r}")


def join_units(units: list[str], unit: str) -> str:
    return "".join(units) if unit == "char" else " ".join(units)


def count_units(text: str, unit: str) -> int:
    return len(split_units(text, unit))


def chunk_source(text: str, unit: str, chunk: int) -> list[str]:
    """Split a source into reads of `chunk` units each (the last read may be shorter).

    For char sources the chunks are substrings of the original text (spaces kept inside a chunk),
    so that joining all reads gives back the source exactly.
    """
    if chunk < 1:
        raise ValueError("chunk size must be at least 1")
    if unit == "word":
        words = text.split()
        return [" ".join(words[i : i + chunk]) for i in range(0, len(words), chunk)]
    reads, current, n = [], "", 0
    for ch in text.strip():
        current += ch
        if not ch.isspace():
            n += 1
            if n == chunk:
                reads.append(current)
                current, n = "", 0
    if current.strip():
        reads.append(current)
    elif current and reads:
        reads[-1] += current
    return reads


def join_reads(reads: list[str], unit: str) -> str:
    return "".join(reads) if unit == "char" else " ".join(reads)


def append_segment(target: str, segment: str, unit: str) -> str:
    """Target so far + a newly written segment, with a space between words for word targets."""
    segment = segment.strip()
    if not segment:
        return target
    if not target or unit == "char":
        return target + segment
    return target + " " + segment


def common_prefix(a: list, b: list) -> int:
    """How many leading items two lists share (units, token ids)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def retranslation_delays(updates: list[tuple[str, float]], unit: str) -> list[float]:
    """Delays of the final display's units for latency scoring: each unit gets the delay of the
    update that last (re)wrote it, as simulstream's log reader assigns them. `updates` are the
    successive (display, delay) pairs of one stream, delay = source read when it was shown."""
    delays: list[float] = []
    shown: list[str] = []
    for display, delay in updates:
        units = split_units(display, unit)
        keep = common_prefix(shown, units)
        delays = delays[:keep] + [delay] * (len(units) - keep)
        shown = units
    return delays


@dataclass
class Step:
    """One policy step: after `read` source units were known, `written` was emitted (""=wait)."""

    read: int  # source units known at this step (cumulative)
    written: str  # target segment written at this step ("" = wait)
    elapsed_ms: float = 0.0  # model time spent on this step
    finished: bool = False  # the policy finished the sentence at this step
    chunk: str = ""  # the source text read at this step
    audio_ms: float | None = None  # speech input: audio received (ms from its start) when the step ran
    # re-translation: the whole translation shown after this step (it replaces the last one; `written`
    # is then ""); None for a policy that only appends
    display: str | None = None

    def to_dict(self) -> dict:
        """The step as JSON; `display` only when there is one (so an appending policy's records
        keep the fields they always had)."""
        out = asdict(self)
        if self.display is None:
            del out["display"]
        return out


@dataclass
class Episode:
    """A whole sentence streamed through a policy."""

    source: str
    source_unit: str
    target_unit: str
    steps: list[Step] = field(default_factory=list)
    # speech input: the sentence's stretch of audio (ms); its start is time 0 of `audio_delays`
    audio_span: tuple[float, float] | None = None

    @property
    def source_length(self) -> int:
        return count_units(self.source, self.source_unit)

    @property
    def retranslated(self) -> bool:
        """The policy showed whole translations (`Step.display`) instead of appending segments."""
        return any(step.display is not None for step in self.steps)

    @property
    def displays(self) -> list[str]:
        """Re-translation: every translation shown, in order (normalized erasure is computed on these)."""
        return [step.display for step in self.steps if step.display is not None]

    @property
    def prediction(self) -> str:
        if self.retranslated:
            return self.displays[-1]
        target = ""
        for step in self.steps:
            target = append_segment(target, step.written, self.target_unit)
        return target

    def _per_unit(self, values: list) -> list:
        """One value per target unit: that of the step that wrote the unit; for re-translation, of
        the update that last rewrote it (`retranslation_delays`, as simulstream
        dates a re-translated output), so AL/LAAL and their computation-aware versions apply unchanged."""
        if self.retranslated:
            return retranslation_delays([(step.display, value) for step, value in zip(self.steps, values)
                                         if step.display is not None], self.target_unit)
        out: list = []
        for step, value in zip(self.steps, values):
            out += [value] * count_units(step.written, self.target_unit)
        return out

    def units_per_step(self) -> list[int]:
        """How many of the final output's units each step wrote: for re-translation, the units
        whose last rewrite was that step's update (so the counts add up to the output's length)."""
        counts = [0] * len(self.steps)
        for step in self._per_unit(list(range(len(self.steps)))):
            counts[step] += 1
        return counts

    def delays(self) -> list[int]:
        """Source units read when each target unit was written (SimulEval's `delays`)."""
        return self._per_unit([step.read for step in self.steps])

    def elapsed(self) -> list[float]:
        """Cumulative model time (ms) when each target unit was written."""
        totals: list[float] = []
        total = 0.0
        for step in self.steps:
            total += step.elapsed_ms
            totals.append(total)
        return self._per_unit(totals)

    def audio_delays(self) -> list[float]:
        """Speech input: ms of the sentence's audio received when each target unit was written
        (SimulEval's `delays` for speech-to-text)."""
        if self.audio_span is None:
            raise ValueError("not a speech episode")
        return self._per_unit([None if step.audio_ms is None else step.audio_ms - self.audio_span[0]
                               for step in self.steps])

    @property
    def source_ms(self) -> float | None:
        return None if self.audio_span is None else self.audio_span[1] - self.audio_span[0]

    @property
    def wait_fraction(self) -> float:
        if not self.steps:
            return 0.0
        return count_waits([(s.written, s.display) for s in self.steps]) / len(self.steps)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["steps"] = [step.to_dict() for step in self.steps]
        return out


def wait_flags(steps: list[tuple[str, str | None]]) -> list[bool]:
    """For each step (written, display): it showed nothing new (no segment written, or for
    re-translation the same display as the step before)."""
    flags, shown = [], ""
    for written, display in steps:
        if display is None:
            flags.append(not written.strip())
        else:
            flags.append(display == shown)
            shown = display
    return flags


def count_waits(steps: list[tuple[str, str | None]]) -> int:
    """Steps (written, display) that showed nothing new (`wait_flags`)."""
    return sum(wait_flags(steps))
