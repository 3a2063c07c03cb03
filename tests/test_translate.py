import json

from seqpo.cli import main


def test_json_events(tiny_model_dir, capsys):
    code = main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--json", "--policy",
                 "wait-k", "--k", "2", "The weather is nice today.\n\nI like tea."])
    assert code == 0
    events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    done = [e for e in events if e["type"] == "done"]
    assert len(done) == 2  # the empty line in between is skipped
    first = events[: events.index(done[0])]
    assert [e["read"] for e in first] == [1, 2, 3, 4, 5]
    assert first[0]["type"] == "wait"
    assert all(e["type"] in ("wait", "write") for e in first)
    assert set(done[0]) >= {"prediction", "AL", "LAAL"}
    written = " ".join(e["text"] for e in first if e["type"] == "write")
    assert written == done[0]["prediction"]


def test_live_view_renders(tiny_model_dir, capsys):
    assert main(["translate", "--pair", "en-zh", "--model", str(tiny_model_dir), "Hello there friend."]) == 0
    out = capsys.readouterr().out
    assert "Hello there friend." in out and "seqpo en-zh" in out


def test_empty_and_huge_input(tiny_model_dir, capsys):
    assert main(["translate", "--model", str(tiny_model_dir), "   "]) == 2
    assert "input is empty" in capsys.readouterr().err
    assert main(["translate", "--model", str(tiny_model_dir), "--max-chars", "10", "a" * 11]) == 2
    assert "limit is 10" in capsys.readouterr().err


def test_decoding_modes_on_the_command_line(tiny_model_dir, capsys):
    for mode in ("append", "slots"):
        code = main(["translate", "--pair", "en-de", "--model", str(tiny_model_dir), "--json", "--policy",
                     "wait-k", "--k", "2", "--decoding", mode, "--slot", "8", "The weather is nice today."])
        assert code == 0
        events = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [e["read"] for e in events[:-1]] == [1, 2, 3, 4, 5]
        assert events[0]["type"] == "wait" and events[-1]["type"] == "done"
