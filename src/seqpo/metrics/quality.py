"""Translation quality: BLEU and chrF through sacrebleu, COMET through unbabel-comet (optional).

Tokenization follows WMT practice: sacrebleu's `zh` tokenizer for Chinese, `ja-mecab` for Japanese
when MeCab is installed (else character-level), `13a` otherwise. Every score carries sacrebleu's
signature so a number can be traced to how it was made.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import sacrebleu

from ..errors import InputFileError, MissingExtraError


def bleu_tokenizer(target_lang: str) -> str:
    if target_lang == "zh":
        return "zh"
    if target_lang == "ja":
        has_mecab = importlib.util.find_spec("MeCab") and importlib.util.find_spec("ipadic")
        return "ja-mecab" if has_mecab else "char"
    return "13a"


def corpus_quality(hypotheses: list[str], references: list[str], target_lang: str) -> dict:
    """Corpus BLEU and chrF, with their sacrebleu signatures."""
    if len(hypotheses) != len(references):
        raise ValueError("need one hypothesis per reference")
    bleu = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(target_lang))
    chrf = sacrebleu.metrics.CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return {
        "BLEU": round(b.score, 2),
        "chrF": round(c.score, 2),
        "signatures": {"BLEU": str(bleu.get_signature()), "chrF": str(chrf.get_signature())},
    }


def sentence_chrf(hypothesis: str, reference: str) -> float:
    return sacrebleu.metrics.CHRF().sentence_score(hypothesis, [reference]).score


def sentence_bleu(hypothesis: str, reference: str, target_lang: str) -> float:
    metric = sacrebleu.metrics.BLEU(tokenize=bleu_tokenizer(target_lang), effective_order=True)
    return metric.sentence_score(hypothesis, [reference]).score


@functools.lru_cache(maxsize=1)
def _comet_model(path: str):
    """Loaded once per process: RL rewards score every training step with it."""
    from comet import load_from_checkpoint  # optional dependency, imported only when asked for

    return load_from_checkpoint(path)


def sentence_scores(sources: list[str], hypotheses: list[str], references: list[str], target_lang: str,
                    metric: str = "chrf", comet: str | Path | None = None) -> list[float]:
    """One quality score (0-100) per sentence: chrF, BLEU or COMET (needs a local checkpoint)."""
    if metric == "chrf":
        return [sentence_chrf(h, r) if h else 0.0 for h, r in zip(hypotheses, references)]
    if metric == "bleu":
        return [sentence_bleu(h, r, target_lang) if h else 0.0 for h, r in zip(hypotheses, references)]
    if metric == "comet":
        if not comet:
            raise InputFileError("the COMET quality metric needs --comet PATH (a local checkpoint)")
        return comet_scores(sources, hypotheses, references, comet)[1]
    raise ValueError(f"unknown quality metric {metric!r} (chrf, bleu, comet)")


def comet_scores(
    sources: list[str], hypotheses: list[str], references: list[str], checkpoint: str | Path,
    batch_size: int = 8,
) -> tuple[float, list[float]]:
    """System COMET (x100) and per-sentence scores from a local unbabel-comet checkpoint."""
    if importlib.util.find_spec("comet") is None:
        raise MissingExtraError("COMET needs the comet extra: pip install -e '.[comet]' in the seqpo clone")
    path = Path(checkpoint)
    if not path.exists():
        raise InputFileError(f"COMET checkpoint not found: {path}")
    model = _comet_model(str(path))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references)]
    out = model.predict(data, batch_size=batch_size, gpus=0, progress_bar=False)
    return 100 * float(out.system_score), [100 * float(s) for s in out.scores]
