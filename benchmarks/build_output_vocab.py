"""Build the token set that `--vocab seen` ships (src/seqpo/models/vocab/seen.npz): every token id the
bundled Gemma-3-270M tokenizer gives on the training side of the WMT general MT test sets of every
supported pair (en-zh, zh-en, en-de, de-en, en-ja), plus control, byte-fallback, digit, punctuation
and whitespace tokens, capitalized Latin-script pieces (names) and pieces written only in Han or kana
(`seqpo.output_vocab.kept_ids`).

    python benchmarks/build_output_vocab.py                 # the sets through sacrebleu (wmt22, wmt23)
    python benchmarks/build_output_vocab.py --from DIR      # files named generaltest{year}.{pair}.{lang}

Training side only: generaltest2022 and generaltest2023, both sides, without the last 200 lines of
either year (the dev splits of every recipe, `seqpo data wmt`; the en-* sets of a year share their
English side, so every pair's dev lines are dropped from every file) and without any line equal to
one of those; generaltest2024 (the test split) is never read. Prints the set's size and the share of
the output layer it keeps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from seqpo.data.wmt import _downloaded, _local
from seqpo.languages import parse_pair
from seqpo.model import load_tokenizer
from seqpo.output_vocab import SEEN_SET, kept_ids, save_token_set

PAIRS = ("en-zh", "zh-en", "en-de", "de-en", "en-ja")
YEARS = (2022, 2023)
DEV_LINES = 200


def training_text(from_dir: str | None) -> list[str]:
    sets = {(pair, year): _local(Path(from_dir), year, parse_pair(pair)) if from_dir
            else _downloaded(year, parse_pair(pair)) for pair in PAIRS for year in YEARS}
    held_out = {line.strip() for sides in sets.values() for side in sides for line in side[-DEV_LINES:]}
    return [line for sides in sets.values() for side in sides for line in side[:-DEV_LINES]
            if line.strip() and line.strip() not in held_out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="from_dir",
                    help="folder of generaltest{year}.{pair}.{lang} files; default: download through sacrebleu")
    ap.add_argument("--out", default=str(SEEN_SET))
    args = ap.parse_args()
    tokenizer = load_tokenizer(None)
    texts = training_text(args.from_dir)
    ids = kept_ids(tokenizer, texts)
    save_token_set(Path(args.out), tokenizer, ids)
    print(f"{len(texts)} lines -> {len(ids)} of {len(tokenizer)} tokens kept "
          f"({len(ids) / len(tokenizer):.1%}) -> {args.out}")


if __name__ == "__main__":
    main()
