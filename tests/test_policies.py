from seqpo.requests import Completion
from seqpo.languages import parse_pair
from seqpo.policies import LLMPolicy, OfflinePolicy, WaitKPolicy, make_policy
from seqpo.policies.base import State, whole_units
from seqpo.prompts import complete_prefix, seqpo_prompt, streaming_prefix

EN_DE = parse_pair("en-de")
EN_ZH = parse_pair("en-zh")


def state(pair, read, finished=False, target=""):
    return State(pair, " ".join(["w"] * read), read, finished, target, read)


def test_prompt_template_paper_format():
    p = seqpo_prompt(EN_ZH, "Hello world", "你好")
    assert p == "Translate from English to Chinese in a streaming style:\nEnglish: Hello world\nChinese: 你好"
    assert seqpo_prompt(EN_ZH, "Hello", "").endswith("Chinese:")


def test_few_shot_blocks_use_the_template_and_show_a_wait():
    stream = streaming_prefix(EN_DE)
    assert stream.count("in a streaming style:") >= 4
    assert "German:\n\n" in stream  # an empty continuation = wait
    full = complete_prefix(EN_DE)
    assert "Wenn es regnet, bleiben wir zu Hause." in full


def test_every_supported_pair_has_examples_a_wait_and_a_measured_ratio():
    from seqpo.languages import UNIT_RATIO
    from seqpo.prompts import supported_pairs

    assert "ja-en" in supported_pairs()
    for name in supported_pairs():
        pair = parse_pair(name)
        assert f"{pair.target_name}:\n\n" in streaming_prefix(pair), name  # a snapshot that waits
        assert (pair.source, pair.target) in UNIT_RATIO, name
    full = complete_prefix(parse_pair("ja-en"))
    # Japanese chunks join without spaces (characters are its units), English ones with them
    assert "Japanese: 雨が降ったら、私たちは家にいます。\nEnglish: If it rains, we will stay at home." in full


def test_wait_k_schedule_en_de():
    pol = WaitKPolicy(k=3)
    assert [pol.allowed_units(state(EN_DE, r)) for r in range(1, 7)] == [0, 0, 1, 2, 3, 4]
    assert pol.plan(state(EN_DE, 2)) is None  # still waiting: no model call
    req = pol.plan(state(EN_DE, 4, target="Das"))
    assert req.max_units == 1
    assert req.must_write  # the schedule forces a write: an adapter may not answer it with a wait
    assert pol.plan(state(EN_DE, 9, finished=True)).max_units is not None


def test_wait_k_schedule_scales_to_chinese_characters():
    pol = WaitKPolicy(k=1)
    # 1.79 characters per English word, rounded up
    assert [pol.allowed_units(state(EN_ZH, r)) for r in (1, 2, 3)] == [2, 4, 6]


def test_offline_waits_until_the_end():
    pol = OfflinePolicy()
    assert pol.plan(state(EN_DE, 3)) is None
    assert pol.plan(state(EN_DE, 4, finished=True)) is not None


def test_llm_policy_guard_stops_runaway_targets():
    pol = LLMPolicy(max_lead=2)
    assert pol.room(state(EN_DE, 1)) == 3
    assert pol.plan(state(EN_DE, 1, target="a b c")) is None  # no room: wait without the model
    seg = pol.segment(state(EN_DE, 1), Completion(" eins zwei drei vier", 10, 1.0, hit_newline=True))
    assert seg == "eins zwei drei"


def test_whole_units_drops_cut_words_and_sentence_ends():
    cut = Completion(" Das Wetter ist sch", 6, 1.0, hit_newline=False)
    assert whole_units(cut, "word") == "Das Wetter ist"
    ended = Completion(" Das Wetter ist schön.", 6, 1.0, hit_newline=True)
    assert whole_units(ended, "word") == "Das Wetter ist schön"
    assert whole_units(ended, "word", final=True) == "Das Wetter ist schön."
    assert whole_units(Completion("今天天气很好。", 6, 1.0, True), "char") == "今天天气很好"


def test_make_policy_rejects_unknown():
    import pytest

    from seqpo.errors import SettingsError

    with pytest.raises(SettingsError):
        make_policy("greedy")
