"""`seqpo data wmt --from DIR`: the WMT general test sets split into train/dev/test the way the
recipes use them (test = a whole year, dev = the last lines of another, train = the rest minus leaks)."""

import json

import pytest

from seqpo.cli import main


@pytest.fixture
def wmt_dir(tmp_path):
    """Three small 'years' of an en-de test set; 2022 repeats a 2024 line and one of its own."""
    folder = tmp_path / "wmt"
    folder.mkdir()
    years = {
        2022: [f"Line {i} of twenty-two." for i in range(8)] + ["Shared with the test set.", "Line 0 of twenty-two."],
        2023: [f"Line {i} of twenty-three." for i in range(6)],
        2024: ["Shared with the test set."] + [f"Line {i} of twenty-four." for i in range(3)],
    }
    for year, lines in years.items():
        (folder / f"generaltest{year}.en-de.en").write_text("\n".join(lines) + "\n")
        (folder / f"generaltest{year}.en-de.de").write_text("\n".join(f"DE {x}" for x in lines) + "\n")
    return folder


def read(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_splits_the_way_the_recipes_expect(wmt_dir, tmp_path, capsys):
    out = tmp_path / "split"
    args = ["data", "wmt", "--pair", "en-de", "--from", str(wmt_dir), "--dev-lines", "2", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["train"], summary["dev"], summary["test"]) == (12, 2, 4)
    assert summary["dropped_from_train"] == {"held_out": 1, "repeated": 1, "empty": 0}
    assert read(out / "test.en-de.en") == read(wmt_dir / "generaltest2024.en-de.en")  # the whole test year
    assert read(out / "dev.en-de.en") == ["Line 4 of twenty-three.", "Line 5 of twenty-three."]
    train = read(out / "train.en-de.en")
    assert not set(train) & set(read(out / "test.en-de.en") + read(out / "dev.en-de.en"))  # nothing held out leaks
    assert len(train) == len(set(train)) and read(out / "train.en-de.de") == [f"DE {x}" for x in train]
    assert json.loads((out / "splits.json").read_text())["source"] == str(wmt_dir)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(args) == 0  # re-running rewrites the same files
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


@pytest.mark.parametrize("extra, message", [
    (["--year", "2022,2024", "--dev-year", "2023"], "--dev-year 2023 is not among --year 2022,2024"),
    (["--dev-year", "2024"], "must differ"),
    (["--year", "twenty"], "--year takes years"),
    (["--dev-lines", "50"], "not more than --dev-lines 50"),
    (["--pair", "en-zh"], "no generaltest2022.en-zh.en"),
])
def test_bad_settings_are_one_line(wmt_dir, tmp_path, capsys, extra, message):
    args = ["data", "wmt", "--pair", "en-de", "--from", str(wmt_dir), "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
