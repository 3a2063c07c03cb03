"""EpisodeRun: a source fed piece by piece gives the same reads and steps as a whole line (`simulate`)."""

import pytest

from seqpo.generation import Generator
from seqpo.languages import parse_pair
from seqpo.policies import OfflinePolicy, WaitKPolicy
from seqpo.driver import EpisodeRun, SentenceTooLongError, step_due
from seqpo.model_steps import CompleterSteps
from seqpo.simulate import stream_text


def test_words_complete_only_after_whitespace_or_end():
    live = EpisodeRun(parse_pair("en-de"), OfflinePolicy(), chunk=1)
    live.feed("Hel")
    assert live.next_step() is None  # "Hel" may still grow
    live.feed("lo wor")
    planned = live.next_step()
    assert planned.state.source_prefix == "Hello" and planned.request is None
    live.record(None)
    assert live.next_step() is None
    live.feed("ld")
    live.end()
    planned = live.next_step()
    assert planned.state.source_prefix == "Hello world" and planned.state.source_finished
    assert planned.request is not None  # offline translates at the end


def test_chunks_and_finishing_step_without_new_read():
    live = EpisodeRun(parse_pair("en-de"), WaitKPolicy(k=5, chunk=2), chunk=2)
    live.feed("a b c d ")
    reads = []
    while (p := live.next_step()) is not None:
        reads.append((p.state.read_units, p.state.source_finished))
        live.record(None)
    assert reads == [(2, False), (4, False)]
    live.end()  # every unit was already read: one finishing step at the same read count
    p = live.next_step()
    assert (p.state.read_units, p.state.source_finished, p.chunk) == (4, True, "")


@pytest.mark.parametrize(("fed", "source"), [
    ("took two weeks ", "took two weeks."),  # no mark: one is put on the last word
    ("in the city, ", "in the city."),  # a trailing comma becomes the mark
    ('he said "shell," ', 'he said "shell."'),  # inside closing quotes
    ("Is it late? ", "Is it late?"),  # a sentence that ended keeps its mark
    ("Thank you. ", "Thank you."),
])
def test_a_sentence_closed_without_a_mark_gets_one_on_its_last_word(fed, source):
    """The speech cascade closes sentences at pauses, where Whisper wrote no period; the prompt's
    only sign that the source ended is the final mark, so `end(mark=".")` puts one on the last word:
    the same number of units, and the finishing step's prompt reads it."""
    live = EpisodeRun(parse_pair("en-de"), OfflinePolicy(), chunk=1)
    live.feed(fed)
    while (p := live.next_step()) is not None:  # every word read (waits) before the sentence is closed
        live.record(None)
    units = live.complete_units()
    live.end(mark=".")
    assert live.episode.source == source and live.complete_units() == units
    p = live.next_step()
    assert p.state.source_finished and p.state.source_prefix == source and p.chunk == ""


def test_a_mark_is_put_on_word_sources_only():
    live = EpisodeRun(parse_pair("zh-en"), OfflinePolicy())
    live.feed("今天天气很好")
    live.end(mark=".")
    assert live.episode.source == "今天天气很好"


def test_char_source_counts_characters():
    live = EpisodeRun(parse_pair("zh-en"), OfflinePolicy(), chunk=2)
    live.feed("今天 天")
    p = live.next_step()
    assert p.state.source_prefix == "今天" and p.state.read_units == 2
    live.record(None)
    live.feed("气")
    p = live.next_step()
    assert p.state.source_prefix == "今天 天气" and p.chunk == " 天气"  # as simulate's chunk_source cuts it


def test_empty_sentence_is_done_without_steps():
    live = EpisodeRun(parse_pair("en-de"), OfflinePolicy())
    live.feed("   ")
    live.end()
    assert live.done and live.next_step() is None and live.episode.steps == []


def test_too_long_sentence_is_refused():
    live = EpisodeRun(parse_pair("en-de"), OfflinePolicy(), max_units=3)
    live.feed("a b c")
    with pytest.raises(SentenceTooLongError, match="longer than 3 words"):
        live.feed(" d")


def test_live_matches_simulate_on_tiny_model(tiny_loaded):
    pair = parse_pair("en-de")
    policy = WaitKPolicy(k=2)
    gen = Generator(tiny_loaded.model, tiny_loaded.tokenizer, batch_size=1)
    source = "The weather is nice today."
    expected = stream_text(source, policy, gen, pair, chunk=1)
    steps_on = CompleterSteps(gen)
    live = EpisodeRun(pair, policy, chunk=1, model=steps_on, row=steps_on.open(pair))
    steps = []
    for piece in ["The wea", "ther is ", "nice", " today."]:
        live.feed(piece)
        steps += list(step_due(live))
    live.end()
    steps += list(step_due(live))
    assert live.done
    assert [(s.read, s.chunk, s.written, s.finished) for s in steps] == \
        [(s.read, s.chunk, s.written, s.finished) for s in expected.steps]
    assert live.episode.prediction == expected.prediction
    assert live.episode.source == source


@pytest.mark.parametrize("pair, text", [
    ("en-de", "  The weather  is\tnice today,\n and we would   like tea.  "),
    ("zh-en", " 今天 天气 很好，\n我们 想 喝茶。 "),
])
def test_units_counted_as_text_arrives_match_splitting_it_whole(pair, text):
    """Units are counted piece by piece (never by re-splitting the whole text): after every piece,
    and after the end, the complete units and prefixes are those of splitting everything so far."""
    from seqpo.stream import chunk_source, join_reads, split_units

    unit = parse_pair(pair).source_unit
    for size in (1, 2, 3, 7):
        live = EpisodeRun(parse_pair(pair), OfflinePolicy())
        for i in range(0, len(text), size):
            live.feed(text[i : i + size])
            so_far = text[: i + size]
            units = split_units(so_far, unit)
            growing = unit == "word" and bool(units) and not so_far[-1].isspace()
            assert live.complete_units() == len(units) - growing
        live.end()
        assert live.complete_units() == len(split_units(text, unit))
        for n in range(live.complete_units() + 1):
            assert live.prefix(n) == join_reads(chunk_source(text, unit, 1)[:n], unit)


@pytest.mark.parametrize("piece", ["x" * 7, " " * 7])
def test_sentence_without_spaces_or_of_spaces_is_capped_by_characters(piece):
    """Such text adds no units (one growing word, or none) but is held in memory: capped by characters."""
    live = EpisodeRun(parse_pair("en-de"), OfflinePolicy(), max_units=3, max_chars=20)
    live.feed(piece)
    live.feed(piece)
    with pytest.raises(SentenceTooLongError, match="longer than 20 characters"):
        live.feed(piece)
    assert live.text == piece * 2  # the refused piece was not kept
