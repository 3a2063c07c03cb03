"""`seqpo serve --long-form`: a text session as one unsegmented stream, cut into sentences by the
server with the rule of `seqpo translate --long-form` (`sentences.SentenceCutter`). The real server
on the tiny model (the CLI as a subprocess; in this process where the test must hold the model)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from test_serve import LocalClient, check_sentence, events_until, running_server, speak, ws_url
from test_serve_limits import hold_model, in_process_app, serving, start

THREE = ["The weather is nice today.", "My sister lives near the sea!", "Is it far?"]
# split mid-word, and one message holding the end of one sentence, a whole one and the start of the next
PIECES = ["The wea", "ther is nice to", "day. My sister lives near the sea! Is", " it f", "ar?"]
MAX_UNITS = 12


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    args = ("--long-form", "--max-sentence-units", str(MAX_UNITS), "--max-sentence-words", "30")
    with running_server(tiny_model_dir, tmp_path_factory.mktemp("serve-long"), *args) as url:
        yield url


def send(ws, *texts: str, end: bool = False) -> None:
    for text in texts:
        ws.send(json.dumps({"type": "source", "text": text}))
    if end:
        ws.send(json.dumps({"type": "end"}))


def sentence_events(events: list[dict], index: int) -> list[tuple]:
    """What a sentence's steps did and its result, without the timings."""
    return [(e["type"], e.get("read"), e.get("text"), e.get("prediction"), e.get("delays"))
            for e in events if e.get("sentence") == index]


def one_by_one(url: str, sentences: list[str], **fields) -> list[dict]:
    """The sentences sent one by one in a sentence-mode session: all their events."""
    with connect(ws_url(url)) as ws:
        assert start(ws, long_form=False, **fields)["long_form"] is False
        for sentence in sentences:
            speak(ws, sentence)
        return events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == len(sentences))


def test_stream_in_any_pieces_gives_the_sentences_sent_one_by_one(server):
    with connect(ws_url(server)) as ws:
        ready = start(ws, policy="wait-k", k=2)  # long-form: the server's default (--long-form)
        assert ready["long_form"] is True and ready["max_sentence_units"] == MAX_UNITS
        send(ws, *PIECES, end=True)
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 3)
    assert not [e for e in events if e["type"] == "error"]
    for index, sentence in enumerate(THREE, start=1):
        check_sentence(events, index, sentence)
    reference = one_by_one(server, THREE, policy="wait-k", k=2)
    for index in (1, 2, 3):
        assert sentence_events(events, index) == sentence_events(reference, index)


def test_a_stream_without_punctuation_is_cut_at_max_sentence_units(server):
    words = [f"w{i}" for i in range(2 * MAX_UNITS + 5)]
    with connect(ws_url(server)) as ws:
        start(ws, policy="wait-k", k=1)
        send(ws, " ".join(words[:7]) + " ", " ".join(words[7:]), end=True)
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 3)
    done = [e for e in events if e["type"] == "done"]
    assert [d["source"] for d in done] == [" ".join(words[:MAX_UNITS]), " ".join(words[MAX_UNITS:2 * MAX_UNITS]),
                                           " ".join(words[2 * MAX_UNITS:])]
    for index, d in enumerate(done, start=1):
        check_sentence(events, index, d["source"])


def test_character_source_closes_at_each_full_stop(server):
    sentences = ["今天天气很好。", "我们发布了新版本！"]
    with connect(ws_url(server)) as ws:
        start(ws, pair="zh-en", policy="wait-k", k=2)
        send(ws, "今天天", "气很好。我们", "发布了新版本！", end=True)
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
    done = [e for e in events if e["type"] == "done"]
    assert [d["source"] for d in done] == sentences
    for index, sentence in enumerate(sentences, start=1):  # a read per character
        reads = [e["read"] for e in events if e.get("sentence") == index and e["type"] != "done"]
        assert reads == list(range(1, len(sentence) + 1))
    reference = one_by_one(server, sentences, pair="zh-en", policy="wait-k", k=2)
    for index in (1, 2):
        assert sentence_events(events, index) == sentence_events(reference, index)


def test_end_closes_the_open_sentence_and_never_an_empty_one(server):
    with connect(ws_url(server)) as ws:
        start(ws, policy="wait-k", k=1)
        send(ws, "One two. Three four", end=True)  # the end closes "Three four"
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
        send(ws, "Five six. ", "  ", end=True)  # ended at a sentence end: nothing left to close
        send(ws, "Seven.", end=True)  # a sentence end not yet followed by whitespace: the end closes it
        ws.send(json.dumps({"type": "end"}))  # an end without any text: no sentence, no error
        send(ws, "Eight", end=True)
        events += events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 5)
    assert not [e for e in events if e["type"] == "error"]
    done = [(e["sentence"], e["source"]) for e in events if e["type"] == "done"]
    assert done == [(1, "One two."), (2, "Three four"), (3, "Five six."), (4, "Seven."), (5, "Eight")]


def test_stream_end_follows_the_last_sentence_of_each_stream(server):
    """Each end of a long-form stream is answered by one stream_end, after the last sentence of the
    stream is done or dropped, counting both; a sentence-mode session gets none."""
    with connect(ws_url(server)) as ws:
        start(ws, policy="wait-k", k=1)
        send(ws, *PIECES, end=True)
        events = events_until(ws, lambda e: e["type"] == "stream_end")
        assert events[-1] == {"type": "stream_end", "sentences": 3, "dropped": 0}
        assert events[-2]["type"] == "done" and events[-2]["sentence"] == 3
        # a sentence over --max-sentence-chars is dropped; the stream's end waits for the next one
        send(ws, "Huge " + "x" * 500 + " and the rest of it. Fine now.", end=True)
        events = events_until(ws, lambda e: e["type"] == "stream_end")
        assert [(e["type"], e.get("sentence")) for e in events if e["type"] in ("error", "done")] == \
            [("error", 4), ("done", 5)]
        assert events[-1] == {"type": "stream_end", "sentences": 1, "dropped": 1}
        ws.send(json.dumps({"type": "end"}))  # an empty stream
        assert json.loads(ws.recv(timeout=30)) == {"type": "stream_end", "sentences": 0, "dropped": 0}
        assert start(ws, long_form=False)["long_form"] is False
        speak(ws, "One two.")
        events = events_until(ws, lambda e: e["type"] == "done")
        ws.send(json.dumps({"type": "shout"}))  # answered after everything before it
        assert json.loads(ws.recv(timeout=30))["code"] == "bad_type"
    assert not [e for e in events if e["type"] == "stream_end"]


def test_limits_hold_per_sentence_and_start_chooses_the_mode(server):
    with connect(ws_url(server)) as ws:
        ws.send(json.dumps({"type": "start", "long_form": "yes"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "bad_value"
        start(ws, policy="wait-k", k=1)
        # a sentence over --max-sentence-chars (16 per word: 480) is dropped up to its end, the stream goes on
        send(ws, "Huge " + "x" * 500 + " and the rest of it. Fine now.", end=True)
        events = events_until(ws, lambda e: e["type"] == "done")
    assert [(e["type"], e.get("code"), e["sentence"]) for e in events if e["type"] != "wait" and
            e["type"] != "write"] == [("error", "too_long", 1), ("done", None, 2)]
    assert events[-1]["source"] == "Fine now."
    with connect(ws_url(server)) as ws:  # long_form false: sentences end only at the client's end
        assert start(ws, long_form=False)["long_form"] is False
        send(ws, "One. Two.", end=True)
        events = events_until(ws, lambda e: e["type"] == "done")
    assert events[-1]["source"] == "One. Two." and events[-1]["sentence"] == 1


def test_a_stream_faster_than_the_model_is_refused_sentence_by_sentence(tiny_model_dir, tiny_loaded):
    """--max-queued-sentences 2 bounds a long-form stream: with the model held, each sentence beyond
    the two waiting is refused as busy (its text ignored up to where it ends), one engine row is
    held (append decoding), and the accepted sentences are translated once the model runs again."""
    app, settings = in_process_app(tiny_model_dir, tiny_loaded, decoding="append", max_queued_sentences=2,
                                   long_form=True)
    worker = app.state.worker
    entered, gate = hold_model(worker)
    many = [f"s{i} w{i}." for i in range(2, 51)]
    with serving(app, settings) as url, connect(ws_url(url)) as ws:
        assert start(ws)["long_form"] is True
        send(ws, "s1 w1. ")
        assert entered.wait(30)
        send(ws, " ".join(many[:20]) + " ", " ".join(many[20:]) + " s51")  # s2 waits; s3..s51 are refused
        ws.send(json.dumps({"type": "shout"}))  # answered after every message before it was handled
        refused = events_until(ws, lambda e: e.get("code") == "bad_type")[:-1]
        assert [(e["code"], e["sentence"]) for e in refused] == [("busy", i) for i in range(3, 52)]
        assert worker.engines.open_rows == 1
        send(ws, " w51 still refused. ")  # the rest of the open refused sentence, up to its end
        gate.set()
        events = events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 2)
        send(ws, "Now s52", end=True)
        events += events_until(ws, lambda e: e["type"] == "done" and e["sentence"] == 52)
    done = [(e["sentence"], e["source"]) for e in events if e["type"] == "done"]
    assert done == [(1, "s1 w1."), (2, "s2 w2."), (52, "Now s52")]
    assert not [e for e in events if e["type"] == "error"]


def test_append_session_equals_translate_long_form(tiny_model_dir, tiny_loaded):
    """With append decoding each sentence of the stream is an engine episode of its own, and the
    session translates as `run_episodes` over `split_sentences` (what `seqpo translate --long-form`
    runs) on an engine of the same mode; every engine row is freed after."""
    import concurrent.futures
    import contextlib

    from seqpo.generation import Generator
    from seqpo.serve import ServeSettings
    from seqpo.serve.app import create_app
    from seqpo.sentences import split_sentences
    from test_serve_decoding import offline, rows_freed, steps_of, until

    settings = ServeSettings(model=str(tiny_model_dir), pair="en-de", policy="wait-k", k=2, decoding="append",
                             long_form=True)
    app = create_app(settings, Generator(tiny_loaded.model, tiny_loaded.tokenizer))
    sentences = [s for _, s in split_sentences("".join(PIECES), "word", settings.max_sentence_units)]
    assert sentences == THREE
    want = [offline(tiny_loaded, settings, "en-de", s) for s in sentences]
    assert all(episode.prediction for episode in want)
    with LocalClient(app) as client:
        with contextlib.suppress(concurrent.futures.CancelledError), client.websocket_connect("/ws/translate") as ws:
            ws.send_text(json.dumps({"type": "start"}))
            assert json.loads(ws.receive_text())["long_form"] is True
            for piece in PIECES:
                ws.send_text(json.dumps({"type": "source", "text": piece}))
            ws.send_text(json.dumps({"type": "end"}))
            events = until(ws, lambda e: e["type"] == "done" and e["sentence"] == 3)
        done = [e for e in events if e["type"] == "done"]
        for index, episode in enumerate(want, start=1):
            assert steps_of(events, index) == [(s.read, s.written) for s in episode.steps]
            assert (done[index - 1]["source"], done[index - 1]["prediction"], done[index - 1]["delays"]) == \
                (episode.source, episode.prediction, episode.delays())
        assert rows_freed(app)
