"""`--vocab seen`: the causal LM's output layer restricted to the tokens the toolkit's languages
write, for CPU inference (vocabulary selection for output layers, as in L'Hostis et al. 2016,
"Vocabulary Selection Strategies for Neural Machine Translation", with one fixed set).

The bundled Gemma-3-270M scores 262,144 tokens every pass, most of them in scripts that English,
German, Chinese and Japanese never write; its output layer is 168M of the model's 270M weights.
`RestrictedHead` multiplies by the kept rows only and scatters their logits into full-width logits
that are -inf elsewhere, so every consumer (argmax, sampling, log-probs, the stop and must-write
rules, the look-ahead engines' own head calls) runs unchanged on token ids of the full vocabulary,
and a token outside the set gets probability 0. (Mapping ids back instead would save the
full-width tensor, a few hundred kB per pass, at the cost of teaching every consumer two id spaces.)

The kept set (`kept_ids`) is what the languages' text gives, plus the pieces such text cannot list
(names, Chinese and Japanese words); it ships in models/vocab/ with the tokenizer it was built for
(its size and a hash of its tokens in id order); `benchmarks/build_output_vocab.py` builds it.
Training never restricts: only the inference settings offer `--vocab`.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from .errors import ModelLoadError, SettingsError
from .model_names import VOCABS

SEEN_SET = Path(__file__).parent / "models" / "vocab" / "seen.npz"
# Pieces kept whatever the text held: digits, ASCII punctuation and whitespace (SentencePiece's
# space is "▁"), so numbers, markup and line ends stay writable.
_SYMBOLS = set(string.digits + string.punctuation + " \t\n\r▁")
_BYTE = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece byte fallback: any character, byte by byte
_UNUSED = re.compile(r"<unused\d+>")  # reserved slots of the vocabulary, never written
_NAME = re.compile(r"▁?[A-ZÄÖÜ][a-zäöüß]*")
_HAN_KANA = re.compile(r"▁?[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]+")  # kana, CJK extension A, unified ideographs


def check_vocab(vocab: str | None) -> str:
    name = str(vocab or "full").strip().lower()
    if name not in VOCABS:
        raise SettingsError(f"--vocab must be one of {', '.join(VOCABS)}; got {vocab!r}")
    return name


def tokenizer_digest(tokenizer) -> tuple[int, str]:
    """The tokenizer a token set is valid for: its size and the SHA-256 of its tokens in id order."""
    by_id = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return len(by_id), hashlib.sha256("\n".join(token for token, _ in by_id).encode("utf-8")).hexdigest()


def structural_ids(tokenizer) -> set[int]:
    """Tokens kept whatever the text: special and control tokens (BOS, EOS, pad, turn markers; not
    the reserved `<unusedN>` slots), byte-fallback tokens, each digit, punctuation mark and
    whitespace character as the tokenizer writes it alone, and SentencePiece pieces of only those."""
    ids = set(tokenizer.all_special_ids)
    ids |= {i for i, added in tokenizer.added_tokens_decoder.items() if not _UNUSED.fullmatch(added.content)}
    # each as the tokenizer writes it alone (byte-level BPE: "Ċ" for a newline)
    for text in (*_SYMBOLS - {"▁"}, "\n\n"):
        ids.update(tokenizer(text, add_special_tokens=False).input_ids)
    for token, i in tokenizer.get_vocab().items():
        if _BYTE.fullmatch(token) or (token and set(token) <= _SYMBOLS):
            ids.add(i)
    return ids


def word_ids(tokenizer) -> set[int]:
    """Word pieces a sample of text cannot list: every capitalized Latin-script piece (names, which
    a translation copies from its source as they are) and every piece written only in Han or kana
    (Chinese and Japanese words)."""
    return {i for token, i in tokenizer.get_vocab().items() if _NAME.fullmatch(token) or _HAN_KANA.fullmatch(token)}


def kept_ids(tokenizer, texts: Iterable[str], batch: int = 1000) -> np.ndarray:
    """Every token id that encoding `texts` gives, plus `structural_ids` and `word_ids`, sorted."""
    ids = structural_ids(tokenizer) | word_ids(tokenizer)
    texts = list(texts)
    for start in range(0, len(texts), batch):
        for encoded in tokenizer(texts[start:start + batch], add_special_tokens=False).input_ids:
            ids.update(encoded)
    return np.array(sorted(ids), dtype=np.int32)


def save_token_set(path: Path, tokenizer, ids: np.ndarray) -> None:
    size, digest = tokenizer_digest(tokenizer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ids=np.asarray(ids, dtype=np.int32), vocab_size=size, tokenizer_sha256=digest)


def load_token_set(tokenizer, path: Path | None = None) -> torch.Tensor:
    """The token set at `path` (default: the shipped `SEEN_SET`) as sorted ids, refused for any
    tokenizer but the one it was built for."""
    with np.load(path or SEEN_SET) as saved:
        ids, size, digest = saved["ids"], int(saved["vocab_size"]), str(saved["tokenizer_sha256"])
    have = tokenizer_digest(tokenizer)
    if have != (size, digest):
        raise ModelLoadError(f"--vocab seen: its token set was built for a tokenizer of {size} tokens "
                             f"(sha256 {digest[:12]}), not this model's ({have[0]} tokens, sha256 {have[1][:12]}); "
                             "use --vocab full")
    return torch.from_numpy(ids.astype(np.int64))


class RestrictedHead(torch.nn.Module):
    """An output layer computing only the rows `ids` of `head` (an `nn.Linear`, so `--quantize int8`
    quantizes the smaller layer); the other logits are -inf."""

    def __init__(self, head: torch.nn.Linear, ids: torch.Tensor):
        super().__init__()
        ids = ids.to(head.weight.device)
        self.out_features = head.out_features
        self.kept = torch.nn.Linear(head.in_features, len(ids), bias=head.bias is not None,
                                    device=head.weight.device, dtype=head.weight.dtype)
        with torch.no_grad():
            self.kept.weight.copy_(head.weight[ids])  # a copy: Gemma ties the full matrix to its embeddings
            if head.bias is not None:
                self.kept.bias.copy_(head.bias[ids])
        self.register_buffer("ids", ids, persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        kept = self.kept(hidden.to(self.ids.device))  # a model split over GPUs (auto-map) hands it over
        logits = kept.new_full((*kept.shape[:-1], self.out_features), float("-inf"))
        return logits.index_copy_(-1, self.ids, kept)


def restrict_vocab(lm, tokenizer, vocab: str = "full", path: Path | None = None):
    """`lm` (a causal LM or a peft model on one) with its output layer restricted to the `vocab`
    token set; `full` leaves it as it is. Call it after the adapters are attached and before
    quantizing."""
    if check_vocab(vocab) == "full":
        return lm
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear:  # a LoRA-adapted or already quantized head has its own forward
        raise ModelLoadError(f"--vocab {vocab}: the output layer is a {type(head).__name__}, not a plain linear layer")
    cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    if getattr(cfg, "final_logit_softcapping", None):  # tanh would turn -inf into a finite logit
        raise ModelLoadError(f"--vocab {vocab}: this model soft-caps its logits; use --vocab full")
    ids = load_token_set(tokenizer, path)
    if int(ids[-1]) >= head.out_features:
        raise ModelLoadError(f"--vocab {vocab}: token {int(ids[-1])} is outside the output layer's {head.out_features}")
    base.set_output_embeddings(RestrictedHead(head, ids))
    return lm


__all__ = ["SEEN_SET", "VOCABS", "RestrictedHead", "check_vocab", "kept_ids", "load_token_set", "restrict_vocab",
           "save_token_set", "structural_ids", "tokenizer_digest", "word_ids"]
