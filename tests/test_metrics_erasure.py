"""Normalized erasure: hand-computed display sequences, and (when simulstream is installed) its
`normalized_erasure` statistic on logs written from the same displays."""

from __future__ import annotations

import json
import random

import pytest

from seqpo.metrics.erasure import corpus_normalized_erasure, erased_units, normalized_erasure, total_erasure
from seqpo.stream import retranslation_delays


def test_erased_units_after_the_common_prefix():
    assert erased_units("the cat sat", "the cat sat on", "word") == 0
    assert erased_units("the cat sat", "the dog sat", "word") == 2       # "cat sat"
    assert erased_units("the transl", "the translation", "word") == 1    # a word that grows is rewritten
    assert erased_units("a b", "", "word") == 2
    assert erased_units("今天很好", "今天天气很好", "char") == 2          # 很好
    assert erased_units("今天 很好", "今天很好", "char") == 0             # spaces are not units


def test_append_only_stream_has_no_erasure():
    assert normalized_erasure(["a", "a b", "a b c"], "word") == 0.0


def test_hand_computed_retranslation():
    displays = ["Ich", "Ich habe", "Ich bin", "Ich bin gestern", "Gestern bin ich"]
    # Erased: 0, "habe" = 1, 0, all three = 3 -> 4 over 3 final words.
    assert total_erasure(displays, "word") == 4
    assert normalized_erasure(displays, "word") == pytest.approx(4 / 3)
    zh = ["我", "我们", "我是", "我是学生"]  # erased: 0, 们 = 1, 0 -> 1 over 4 characters
    assert normalized_erasure(zh, "char") == 0.25


def test_corpus_pools_streams():
    a = ["x y", "z"]          # 2 erased, 1 final word
    b = ["p", "p q r"]        # 0 erased, 3 final words
    assert corpus_normalized_erasure([a, b], "word") == 0.5   # 2 / 4, not the mean of 2 and 0
    with pytest.raises(ValueError, match="undefined"):
        normalized_erasure(["a", ""], "word")


def test_retranslation_delays_date_each_unit_by_its_last_rewrite():
    updates = [("Ich", 1), ("Ich habe", 2), ("Ich bin", 3), ("Ich bin gestern", 5), ("Gestern bin ich", 6)]
    assert retranslation_delays(updates[:4], "word") == [1, 3, 5]
    assert retranslation_delays(updates, "word") == [6, 6, 6]
    assert retranslation_delays([("我", 1), ("我们", 2), ("我是学生", 4)], "char") == [1, 4, 4, 4]
    assert retranslation_delays([], "word") == []


def test_same_as_simulstream(tmp_path):
    pytest.importorskip("yaml")
    stats = pytest.importorskip("simulstream.metrics.stats")
    from types import SimpleNamespace

    from simulstream.metrics.readers import LogReader

    rng = random.Random(0)
    streams, log = [], [json.dumps({"id": k, "metadata": {"wav_name": f"talk{k}.wav"}}) for k in range(20)]
    for k in range(20):
        displays, words = [], []
        for _ in range(rng.randint(1, 8)):
            keep = rng.randint(0, len(words))
            new = [rng.choice("a b c d e".split()) for _ in range(rng.randint(0, 3))]
            deleted = words[keep:]
            if deleted and new and new[0] == deleted[0]:
                continue  # the display would keep a longer prefix than this update claims to
            words = words[:keep] + new
            log.append(json.dumps({"id": k, "generated_tokens": new, "deleted_tokens": deleted,
                                   "total_audio_processed": float(len(displays)), "computation_time": 0.0}))
            displays.append(" ".join(words))
        streams.append(displays)
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(log) + "\n")
    reader = LogReader(SimpleNamespace(detokenizer_type="simuleval", latency_unit="word"), str(path), "word")
    outputs = reader.final_outputs_and_latencies()
    for k, displays in enumerate(streams):
        if displays:
            updates = [(d, float(t)) for t, d in enumerate(displays)]
            assert retranslation_delays(updates, "word") == outputs[f"talk{k}"].ideal_delays
    ne = corpus_normalized_erasure(streams, "word")
    assert ne > 0.2 and ne == pytest.approx(stats.NormalizedErasure().compute(reader))
