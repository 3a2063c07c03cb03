"""mWER re-segmentation: hand-computed boundaries, a brute-force check of what the DP minimises, and
(when mweralign is installed) the same segments as mweralign, the aligner simulstream calls."""

from __future__ import annotations

import itertools
import random

import pytest

from seqpo.metrics.resegment import alignment_tokens, mwer_boundaries, resegment, unit_spans

REFS = [["a", "b", "c"], ["d", "e", "f"]]


@pytest.mark.parametrize("hyp, ends", [
    ("a b c d e f", [3, 6]),       # perfect
    ("A B C D E F", [3, 6]),       # ASCII case is ignored
    ("a b d e f", [2, 5]),         # missing word at the boundary
    ("a b c x d e f", [4, 7]),     # extra word at the boundary: the tie goes to the earlier segment
    ("a b y d e f", [3, 6]),       # substituted last word stays in its sentence
    ("a b c d e", [3, 5]),
    ("a b c", [3, 3]),             # nothing for the second sentence: an empty segment
    ("", [0, 0]),
])
def test_hand_computed_boundaries(hyp, ends):
    assert mwer_boundaries(hyp.split(), REFS) == ends


def test_leading_empty_segment_costs_one_as_in_mwersegmenter():
    # Optimal would be [0, 3] (3 deletions); mwerSegmenter's first column charges the end mark of
    # sentence 1, so [0, 3] costs 4, ties with [1, 3] (3 + 1), and the tie goes to the earlier segment.
    assert mwer_boundaries("d e f".split(), REFS) == [1, 3]
    assert mwer_boundaries("x d e f".split(), REFS) == [1, 4]


def test_empty_reference_sentence_gets_an_empty_segment():
    assert mwer_boundaries("a b c d e f".split(), [["a", "b", "c"], [], ["d", "e", "f"]]) == [3, 3, 6]


def _levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x.lower() != y.lower())))
        prev = cur
    return prev[-1]


def _objective(hyp, refs, ends):
    """Total edit distance, plus one per empty segment before the first non-empty one (the end marks
    mwerSegmenter's first column charges)."""
    starts = [0] + ends[:-1]
    leading = next((k for k, (s, e) in enumerate(zip(starts, ends)) if e > s), 0)
    return sum(_levenshtein(hyp[s:e], r) for s, e, r in zip(starts, ends, refs)) + leading


def test_boundaries_minimise_the_objective_by_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        refs = [[rng.choice("abcA") for _ in range(rng.randint(0, 4))] for _ in range(rng.randint(1, 4))]
        hyp = [rng.choice("abcdA") for _ in range(rng.randint(1, 6))]
        best = min(_objective(hyp, refs, [*cut, len(hyp)])
                   for cut in itertools.combinations_with_replacement(range(len(hyp) + 1), len(refs) - 1))
        ends = mwer_boundaries(hyp, refs)
        assert ends[-1] == len(hyp) and ends == sorted(ends)
        assert _objective(hyp, refs, ends) == best, (refs, hyp, ends)


def test_char_tokens_keep_latin_runs_whole():
    assert alignment_tokens("我用GPU训练3.5小时。", "char") == [
        ("我", 1), ("用", 1), ("GPU", 3), ("训", 1), ("练", 1), ("3.5", 3), ("小", 1), ("时", 1), ("。", 1)]
    assert alignment_tokens("Hello big world", "word") == [("Hello", 1), ("big", 1), ("world", 1)]
    assert unit_spans("你 好", "char") == [(0, 1), (2, 3)]


def test_resegment_zh_splits_characters_and_delays():
    refs = ["我用GPU训练。", "今天很好。"]
    hyp = "我用GPU训练今天好。"
    delays = list(range(1, 12))  # 11 non-space characters
    segs = resegment(hyp, delays, refs, "char")
    assert [s.text for s in segs] == ["我用GPU训练", "今天好。"]
    assert [s.delays for s in segs] == [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11]]
    assert segs[0].elapsed is None


def test_resegment_keeps_the_systems_spacing():
    segs = resegment("a  b c\td e f", [1, 2, 3, 4, 5, 6], ["a b c", "d e f"], "word", elapsed=[9] * 6)
    assert [s.text for s in segs] == ["a  b c", "d e f"]
    assert [s.elapsed for s in segs] == [[9, 9, 9], [9, 9, 9]]


def test_resegment_checks_delay_count():
    with pytest.raises(ValueError, match="one delay per word"):
        resegment("a b", [1], ["a b"], "word")
    with pytest.raises(ValueError, match="at least one reference"):
        mwer_boundaries(["a"], [])


def test_same_segments_as_mweralign():
    mweralign = pytest.importorskip("mweralign.mweralign")
    rng = random.Random(1)
    vocab = "a b c d The the cat sat on mat . , dog".split()
    for _ in range(200):
        refs = [[rng.choice(vocab) for _ in range(rng.randint(0, 7))] for _ in range(rng.randint(1, 5))]
        refs[-1] = refs[-1] or ["x"]  # mweralign reads references as lines: a trailing empty one is lost
        hyp = [w if rng.random() > 0.2 else rng.choice(vocab) for r in refs for w in r if rng.random() > 0.15]
        lines = mweralign.align_texts("\n".join(" ".join(r) for r in refs), " ".join(hyp)).split("\n")
        ends = list(itertools.accumulate(len(line.split()) for line in lines))
        assert mwer_boundaries(hyp, refs) == ends, (refs, hyp, lines)
