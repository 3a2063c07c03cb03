"""Quality-latency charts: re-translation beside incremental policies, long-form runs by StreamLAAL."""

import json

import pytest

from seqpo.cli import main
from seqpo.plot import point_label


def test_retranslation_points_carry_their_erasure():
    assert point_label("wait-3", {"BLEU": 16.1, "AL": 2.6}) == "wait-3"
    assert point_label("retranslate", {"BLEU": 15.6, "AL": 5.7, "NE": 1.158}) == "retranslate (NE 1.16)"


@pytest.mark.parametrize("latency", ["StreamLAAL", "LongYAAL"])
def test_chart_of_long_form_runs_by_stream_latency(tmp_path, capsys, latency):
    folders = []
    for name, scores in [("llm", {"BLEU": 18.4, latency: 2.97}), ("wait3", {"BLEU": 14.9, latency: 1.12})]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "scores.json").write_text(json.dumps(scores))
        folders.append(str(tmp_path / name))
    chart = tmp_path / "chart.png"
    assert main(["plot", "--eval", ",".join(folders), "--latency", latency, "--out", str(chart)]) == 0
    assert chart.read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", "--eval", ",".join(folders), "--out", str(tmp_path / "x.png")]) == 2  # no AL in them
    assert "no BLEU or AL" in capsys.readouterr().err
