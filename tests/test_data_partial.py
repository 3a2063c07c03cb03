from seqpo.data.partial import examples_from_schedule, unit_offsets
from seqpo.languages import parse_pair


def test_unit_offsets():
    assert unit_offsets("Das  Wetter ist", "word") == [0, 3, 11, 15]
    assert unit_offsets("今天 好", "char") == [0, 1, 2, 4]


def test_segments_concatenate_to_reference_exactly_words():
    pair = parse_pair("en-de")
    ref = "Gestern hat  der Stadtrat den Haushalt genehmigt."
    ex = examples_from_schedule(0, "Yesterday the council approved the budget", ref, pair, 1, [1, 1, 0, 4, 5, 5])
    assert "".join(e.segment for e in ex) == ref
    assert [e.segment for e in ex][:3] == ["Gestern", "", ""]  # schedule made monotone
    assert ex[-1].final and ex[-1].segment.endswith("genehmigt.")
    assert all(e.target_prefix + e.segment == ref[: len(e.target_prefix + e.segment)] for e in ex)
    assert ex[2].source_prefix == "Yesterday the council"


def test_chinese_units_are_characters():
    pair = parse_pair("en-zh")
    ref = "昨天 市议会批准了预算。"
    ex = examples_from_schedule(3, "Yesterday the council approved", ref, pair, 2, [3, 11])
    assert ex[0].segment == "昨天 市"  # 3 characters, the space kept inside the text
    assert "".join(e.segment for e in ex) == ref
    assert ex[0].index == 3 and [e.step for e in ex] == [1, 2]
