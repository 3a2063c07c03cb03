"""Prompt formats. The SeqPO template (arXiv 2505.20622, sec. 3.1) and the few-shot examples that
let a base model without SiMT training produce sensible streaming output.

`seqpo_prompt` is the one place the template lives; swap it to change the format everywhere.
Few-shot examples are written as aligned chunks (source piece -> target piece, "" = wait), the
same shape as warm-up SFT data, so the complete translations and the streaming snapshots shown to
the model come from one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownPairError
from .languages import LanguagePair
from .stream import append_segment, join_reads


def seqpo_prompt(pair: LanguagePair, source_prefix: str, target_so_far: str) -> str:
    """The streaming prompt; the model continues after the target so far and ends the line."""
    target = f" {target_so_far}" if target_so_far else ""
    return (
        f"Translate from {pair.source_name} to {pair.target_name} in a streaming style:\n"
        f"{pair.source_name}: {source_prefix}\n"
        f"{pair.target_name}:{target}"
    )


@dataclass(frozen=True)
class AlignedExample:
    chunks: tuple[tuple[str, str], ...]  # (source piece, target piece written after reading it)
    cuts: tuple[int, ...]  # numbers of chunks read in the streaming snapshots shown to the model


# Our own examples. Each shows the policy waiting where word order differs (German verb-final,
# Chinese/Japanese time and place before the verb) and writing where it is safe.
EXAMPLES: dict[tuple[str, str], list[AlignedExample]] = {
    ("en", "de"): [
        AlignedExample((("If", ""), ("it rains,", "Wenn es regnet,"), ("we will stay", "bleiben wir"),
                        ("at home.", "zu Hause.")), (1,)),
        AlignedExample((("Yesterday", "Gestern"), ("the city council", ""), ("approved", "hat der Stadtrat"),
                        ("the new budget", "den neuen Haushalt"), ("for schools.", "für Schulen genehmigt.")),
                       (2, 4)),
        AlignedExample((("My sister", "Meine Schwester"), ("lives", "wohnt"), ("in a small village", "in einem kleinen Dorf"),
                        ("near the sea.", "in der Nähe des Meeres.")), (1, 3)),
        AlignedExample((("I think", "Ich glaube,"), ("that we", "dass wir"), ("should leave", ""),
                        ("early tomorrow.", "morgen früh aufbrechen sollten.")), (3,)),
    ],
    ("en", "zh"): [
        AlignedExample((("If", ""), ("it rains,", "如果下雨，"), ("we will stay", "我们就待在"),
                        ("at home.", "家里。")), (1,)),
        AlignedExample((("Yesterday", "昨天"), ("the city council", "市议会"), ("approved", ""),
                        ("the new budget", "批准了新预算，"), ("for schools.", "用于学校。")), (3, 4)),
        AlignedExample((("My sister", "我的妹妹"), ("lives", ""), ("in a small village", "住在一个小村庄，"),
                        ("near the sea.", "靠近大海。")), (2, 3)),
        AlignedExample((("I think", "我认为"), ("that we", "我们"), ("should leave", "应该"),
                        ("early tomorrow.", "明天早点出发。")), (1,)),
    ],
    ("en", "ja"): [
        AlignedExample((("If", ""), ("it rains,", "雨が降ったら、"), ("we will stay", "私たちは"),
                        ("at home.", "家にいます。")), (1,)),
        AlignedExample((("Yesterday", "昨日、"), ("the city council", "市議会は"), ("approved", ""),
                        ("the new budget", ""), ("for schools.", "学校のための新しい予算を承認した。")), (3, 4)),
        AlignedExample((("My sister", "私の妹は"), ("lives", ""), ("in a small village", "小さな村に"),
                        ("near the sea.", "海の近くの小さな村に住んでいる。")), (2,)),
        AlignedExample((("I think", ""), ("that we", "私たちは"), ("should leave", ""),
                        ("early tomorrow.", "明日早く出発すべきだと思う。")), (1, 3)),
    ],
    ("de", "en"): [
        AlignedExample((("Wenn", ""), ("es regnet,", "If it rains,"), ("bleiben wir", "we will stay"),
                        ("zu Hause.", "at home.")), (1,)),
        AlignedExample((("Gestern", "Yesterday"), ("hat der Stadtrat", "the city council"), ("den neuen Haushalt", ""),
                        ("für Schulen genehmigt.", "approved the new budget for schools.")), (3,)),
        AlignedExample((("Meine Schwester", "My sister"), ("wohnt", "lives"), ("in einem kleinen Dorf", "in a small village"),
                        ("in der Nähe des Meeres.", "near the sea.")), (1, 3)),
        AlignedExample((("Ich glaube,", "I think"), ("dass wir", "that we"), ("morgen früh", ""),
                        ("aufbrechen sollten.", "should leave early tomorrow.")), (2, 3)),
    ],
    ("zh", "en"): [
        AlignedExample((("如果", ""), ("下雨，", "If it rains,"), ("我们就", "we will"),
                        ("待在家里。", "stay at home.")), (1,)),
        AlignedExample((("昨天", "Yesterday"), ("市议会", "the city council"), ("批准了", "approved"),
                        ("用于学校的", ""), ("新预算。", "the new budget for schools.")), (2, 4)),
        AlignedExample((("我的妹妹", "My sister"), ("住在", "lives"), ("海边的", ""),
                        ("一个小村庄。", "in a small village by the sea.")), (1, 3)),
        AlignedExample((("我认为", "I think"), ("我们明天", "we"), ("应该早点出发。", "should leave early tomorrow.")),
                       (2,)),
    ],
    ("ja", "en"): [
        AlignedExample((("雨が", ""), ("降ったら、", "If it rains,"), ("私たちは", "we"),
                        ("家にいます。", "will stay at home.")), (1, 3)),
        AlignedExample((("昨日、", "Yesterday"), ("市議会は", "the city council"), ("学校のための", ""),
                        ("新しい予算を", ""), ("承認した。", "approved the new budget for schools.")), (2, 4)),
        AlignedExample((("私の妹は", "My sister"), ("海の近くの", ""), ("小さな村に", ""),
                        ("住んでいる。", "lives in a small village near the sea.")), (1, 3)),
        AlignedExample((("私たちは", "We"), ("明日早く", ""), ("出発すべきだと", "should leave early tomorrow,"),
                        ("思う。", "I think.")), (2, 3)),
    ],
}


def _examples(pair: LanguagePair) -> list[AlignedExample]:
    return EXAMPLES[(pair.source, pair.target)]


def _snapshot(pair: LanguagePair, example: AlignedExample, cut: int) -> str:
    """One few-shot block: the first `cut` chunks read, and everything written after them."""
    source = join_reads([s for s, _ in example.chunks[:cut]], pair.source_unit)
    target = ""
    for _, t in example.chunks[:cut]:
        target = append_segment(target, t, pair.target_unit)
    return seqpo_prompt(pair, source, target) + "\n\n"


def complete_prefix(pair: LanguagePair) -> str:
    """Few-shot block of whole-sentence translations (offline, wait-k, and the final SeqPO step)."""
    return "".join(_snapshot(pair, ex, len(ex.chunks)) for ex in _examples(pair))


def streaming_prefix(pair: LanguagePair) -> str:
    """Few-shot block of mid-sentence snapshots: a source prefix and what is safe to write so far.

    A snapshot whose safe target is empty ends the line right after the colon: that is how the
    model learns that an empty continuation means *wait*.
    """
    return "".join(_snapshot(pair, ex, cut) for ex in _examples(pair) for cut in ex.cuts)


def supported_pairs() -> list[str]:
    return [f"{s}-{t}" for s, t in EXAMPLES]


def check_supported(pair: LanguagePair) -> LanguagePair:
    """Reject pairs we have no prompts for, naming the ones we do."""
    if f"{pair}" not in supported_pairs():
        raise UnknownPairError(f"pair '{pair}' is not supported (supported: {', '.join(supported_pairs())})")
    return pair


# -- Conversational (append-only) format ------------------------------------------------------
# ExPosST (arXiv 2603.14903) compares against dialogue-style SimulMT; HPO (arXiv 2604.21045) reuses its
# KV cache the same way: each read and each written segment is appended as a turn, so the prompt only grows.
# The last read is marked so the model knows it must finish the sentence (re-encode shows it the
# whole-sentence few-shot block instead).
LAST_READ_MARK = " [end]"


def conversation_read(pair: LanguagePair, chunk: str, last: bool) -> str:
    """One source turn; the target turn header follows it at once (the model writes after it)."""
    return f"{pair.source_name}: {chunk.strip()}{LAST_READ_MARK if last else ''}\n{pair.target_name}:"


def conversation_write(segment: str) -> str:
    """The rest of a target turn: the written segment, or nothing (a wait), then the end of line."""
    segment = segment.strip()
    return f" {segment}\n" if segment else "\n"


def conversation_prefix(pair: LanguagePair) -> str:
    """Instruction + every aligned example as a full transcript of read/write turns."""
    blocks = [f"Translate from {pair.source_name} to {pair.target_name} in a streaming style. After each "
              f"{pair.source_name} chunk, write the {pair.target_name} that is safe to say so far "
              f"(nothing if unsure).\n\n"]
    for ex in _examples(pair):
        turns = [conversation_read(pair, s, i == len(ex.chunks) - 1) + conversation_write(t)
                 for i, (s, t) in enumerate(ex.chunks)]
        blocks.append("".join(turns) + "\n")
    return "".join(blocks)


# -- Slots (ExPosST) format -------------------------------------------------------------------
# The SeqPO line format, cut into pieces whose tokens the slots engine places at fixed positions:
# header (before the source region), source pieces (inside it), target line (after it).
def slots_header(pair: LanguagePair) -> str:
    return f"Translate from {pair.source_name} to {pair.target_name} in a streaming style:\n{pair.source_name}:"


def slots_separator(pair: LanguagePair) -> str:
    return f"\n{pair.target_name}:"


def line_piece(text: str, unit: str, first: bool) -> str:
    """A source read or target segment as it continues its line: `Name: a b` + ` c`; characters
    join without spaces after the first piece (as join_reads / append_segment do)."""
    text = text.strip() if unit == "word" or first else text
    if not text.strip():
        return ""
    return f" {text}" if (first or unit == "word") else text


# -- Chat template (instruction-tuned models) ---------------------------------------------------
# An instruction-tuned model expects its own chat turns around a request. The SeqPO prompt keeps
# its lines; the chat template is rendered once around a marker to learn what comes before the user
# turn (head) and what closes it and opens the assistant's answer (tail). The instruction, few-shot
# block and source line go in the user turn; the target line (`Chinese: target so far`) opens the
# assistant turn, so the model still continues the target and ends the line (an empty line = wait).
CHAT_MARK = "<<SEQPO-USER-TURN>>"


@dataclass(frozen=True)
class ChatFormat:
    head: str  # the rendered template before the user's text (system turn, user turn opening)
    tail: str  # after it: the user turn's end and the assistant turn's opening

    def split(self, prompt: str) -> tuple[str, str]:
        """(user text, assistant text) of a prompt: its last line is the target line so far."""
        user, _, line = prompt.rpartition("\n")
        return user, line


def chat_format(tokenizer) -> ChatFormat:
    """The tokenizer's chat template as a `ChatFormat` (one user turn, then the assistant's turn)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": CHAT_MARK}], tokenize=False,
                                         add_generation_prompt=True)
    if text.count(CHAT_MARK) != 1:
        raise ValueError("the chat template does not render the user's message as given")
    head, tail = text.split(CHAT_MARK)
    return ChatFormat(head, tail)
