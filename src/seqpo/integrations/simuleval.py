"""A SimulEval 1.1 text-to-text agent for every seqpo policy, adapter and decoding mode:

    simuleval --agent-class seqpo.integrations.simuleval.SeqpoTextAgent --source SRC --target REF \\
        --pair en-zh --policy llm --eval-latency-unit char --sacrebleu-tokenizer zh --output OUT

SimulEval (Ma et al., 2020) sends the source one word per call and asks for a read or a write. The
words are fed to a `driver.EpisodeRun` (the one episode driver, as in the server and the speech
cascade): a policy step runs once `--chunk` words are in, or at the last word, exactly as
`seqpo eval` reads, and its segment is the agent's write. SimulEval counts as a delay the words it
has sent, which is `Step.read`, so its instances.log has `seqpo eval`'s predictions and delays.

The agent's flags are `PolicySettings`' own fields; `--device` and `--dtype` are SimulEval's.
Slots decoding reserves a live sentence's region for `--max-sentence-words` (its length is not
known in advance), so it writes as `seqpo serve` does, not as `seqpo eval`.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from dataclasses import dataclass

from simuleval.agents import TextToTextAgent
from simuleval.agents.actions import Action, ReadAction, WriteAction

from ..config import PolicySettings, add_settings, build_settings, check_at_least, setting
from ..errors import SettingsError
from ..driver import CompleterSteps, EpisodeRun, step_due
from ..engine import engine_class
from ..generation import Generator
from ..languages import parse_pair
from ..live_engines import EngineSet
from ..model import load_model
from ..prompts import check_supported

# SimulEval's --dtype (or --fp16) in seqpo's words; unset means seqpo's auto
DTYPES = {"fp16": "float16", "fp32": "float32", None: "auto"}


@dataclass
class AgentSettings(PolicySettings):
    """`PolicySettings` plus what a sentence streamed without its length needs."""

    max_sentence_words: int = setting(200, "slots decoding: source units a sentence may reach (its region of "
                                      "reserved positions is sized for this many)")


def agent_settings(args: Namespace) -> AgentSettings:
    """The agent's settings from SimulEval's parsed arguments (seqpo's flags, SimulEval's device/dtype)."""
    values = Namespace(**vars(args))
    values.device = getattr(args, "device", "cpu")
    values.dtype = DTYPES["fp16" if getattr(args, "fp16", False) else getattr(args, "dtype", None)]
    settings = build_settings(AgentSettings, values)
    settings.check_policy()
    check_at_least(settings, 1, "max_sentence_words")
    if settings.policy == "retranslate":  # a SimulEval write is final
        raise SettingsError("SimulEval cannot take back written text: evaluate --policy retranslate with seqpo eval")
    return settings


class SeqpoTextAgent(TextToTextAgent):
    """One sentence at a time: SimulEval's words in, the policy's segments out."""

    def __init__(self, args: Namespace):
        self.settings = s = agent_settings(args)
        self.pair = check_supported(parse_pair(s.pair))
        unit = getattr(args, "eval_latency_unit", self.pair.target_unit)
        if unit != self.pair.target_unit:
            # SimulEval would split the writes into other units than seqpo's delays count
            raise SettingsError(f"{self.pair.target} targets are scored in {self.pair.target_unit}s: "
                                f"pass --eval-latency-unit {self.pair.target_unit}")
        self.seqpo_policy = s.build_policy()
        loaded = load_model(s.model, s.adapter, s.dtype, s.device, s.chat_template, s.decoding)
        # re-encode runs each step's prompt on a Generator; the other modes keep each sentence's
        # cache in an engine episode (`live_engines`), as the server and the speech cascade do
        self.engines = None if not engine_class(s.decoding).keeps_cache else \
            EngineSet(loaded.model, loaded.tokenizer, s.decoding, s.slot, chat=loaded.chat)
        self.generator = self.engines if self.engines is not None else \
            Generator(loaded.model, loaded.tokenizer, batch_size=1, chat=loaded.chat)
        self.model = CompleterSteps(self.generator)
        self.live: EpisodeRun | None = None
        self.row = None
        super().__init__(args)  # calls reset()

    @staticmethod
    def add_args(parser: ArgumentParser) -> None:
        # --device/--dtype are SimulEval's own; look-ahead needs the whole source in advance
        add_settings(parser, AgentSettings, skip=("device", "dtype", "lookahead", "write_ahead"))

    def reset(self) -> None:
        super().reset()
        if self.row is not None:
            self.engines.release(self.row)
        self.row = None if self.engines is None else self.engines.open_row(
            self.pair, None, self.settings.use_few_shot(),
            self.settings.max_sentence_words if self.engines.engine_type.reserves_source else None)
        self.live = EpisodeRun(self.pair, self.seqpo_policy, chunk=self.settings.chunk, model=self.model,
                               row=CompleterSteps.open(self.row))
        self.fed = 0  # SimulEval source segments fed to `live`

    def policy(self) -> Action:
        # a word source gets each word completed by a space; a zh/ja source file must be split into
        # characters with spaces (SimulEval splits it on whitespace), fed back unspaced
        glue = " " if self.pair.source_unit == "word" else ""
        for piece in self.states.source[self.fed:]:
            self.live.feed(piece + glue)
        self.fed = len(self.states.source)
        if self.states.source_finished and not self.live.ended:
            self.live.end()
        # one word completes at most one read, so at most one step runs here
        written = [step.written for step in step_due(self.live) if step.written]
        if self.live.done:
            return WriteAction(" ".join(written) if self.pair.target_unit == "word" else "".join(written),
                               finished=True)
        if written:
            return WriteAction(written[0], finished=False)
        return ReadAction()


__all__ = ["AgentSettings", "SeqpoTextAgent", "agent_settings"]
