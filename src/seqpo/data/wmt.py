"""`seqpo data wmt`: the WMT general test sets of a pair as train / dev / test files, split the way
the recipes use them.

The WMT general MT task releases one test set per year and pair (generaltest2022-2024; docs/data.md).
With a network sacrebleu downloads them (its own test-set registry, `wmt22`...`wmt24`); without
one, `--from DIR` takes files named as the releases are (`generaltest{year}.{pair}.{lang}`). The
split: the whole `--test-year` set is the test split (reported once, never tuned on); the last
`--dev-lines` lines of the `--dev-year` set are the dev split; every other line of every `--year`
set is training data, except lines whose source also occurs in dev or test (no leak by repetition
across years) and repeated sources (kept once).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..config import check_at_least, setting
from ..errors import InputFileError, SettingsError
from ..files import load_parallel
from ..languages import parse_pair
from ..prompts import check_supported

SACREBLEU_SETS = {2022: "wmt22", 2023: "wmt23", 2024: "wmt24"}


@dataclass
class WmtDataSettings:
    pair: str = setting("en-zh", "language pair, source-target")
    year: str = setting("2022,2023,2024", "WMT general test set years to use, comma-separated")
    test_year: int = setting(2024, "the year whose whole set is the test split")
    dev_year: int = setting(2023, "the year whose last --dev-lines lines are the dev split (en-de: 2022, "
                            "as generaltest2023 en-de is long paragraphs)")
    dev_lines: int = setting(200, "lines in the dev split")
    from_dir: str = setting(None, "a folder holding generaltest{year}.{pair}.{lang} files (no download); "
                            "default: download through sacrebleu", flag="--from")
    out: str = setting(None, "output folder: train/dev/test.{pair}.{lang} and splits.json")


def _years(settings: WmtDataSettings) -> list[int]:
    try:
        years = sorted({int(y) for y in str(settings.year).split(",") if y.strip()})
    except ValueError as exc:
        raise SettingsError(f"--year takes years separated by commas, e.g. 2022,2023; got {settings.year!r}") from exc
    for name in ("test_year", "dev_year"):
        if getattr(settings, name) not in years:
            raise SettingsError(f"--{name.replace('_', '-')} {getattr(settings, name)} is not among --year {settings.year}")
    if settings.test_year == settings.dev_year:
        raise SettingsError("--dev-year and --test-year must differ (a test set is used for nothing else)")
    return years


def _local(folder: Path, year: int, pair) -> tuple[list[str], list[str]]:
    stem = folder / f"generaltest{year}.{pair}"
    src, ref = Path(f"{stem}.{pair.source}"), Path(f"{stem}.{pair.target}")
    for path in (src, ref):
        if not path.exists():
            raise InputFileError(f"--from {folder}: no {path.name} (WMT general test set {year}, {pair})")
    return load_parallel(src, ref)


def _downloaded(year: int, pair) -> tuple[list[str], list[str]]:
    import sacrebleu.utils

    name = SACREBLEU_SETS.get(year)
    if name is None:
        raise SettingsError(f"sacrebleu knows the WMT general test sets of {', '.join(map(str, SACREBLEU_SETS))}; "
                            f"for {year} use --from DIR")
    try:
        src = sacrebleu.utils.get_source_file(name, str(pair))
        ref = sacrebleu.utils.get_reference_files(name, str(pair))[0]
    except Exception as exc:  # network, unknown pair for that year: sacrebleu raises and exits variously
        raise InputFileError(f"cannot download {name} {pair} through sacrebleu ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                             "use --from DIR with the files (docs/data.md)") from exc
    except SystemExit as exc:  # sacrebleu calls sys.exit on an unknown set or pair
        raise InputFileError(f"sacrebleu has no {name} set for {pair}; use --from DIR (docs/data.md)") from exc
    return load_parallel(src, ref)


def build_wmt(settings: WmtDataSettings) -> dict:
    """Write OUT/{train,dev,test}.{pair}.{lang} and OUT/splits.json; returns the split sizes."""
    pair = check_supported(parse_pair(settings.pair))
    if not settings.out:
        raise InputFileError("--out is required")
    check_at_least(settings, 1, "dev_lines")
    years = _years(settings)
    sets = {y: _local(Path(settings.from_dir), y, pair) if settings.from_dir else _downloaded(y, pair) for y in years}
    if len(sets[settings.dev_year][0]) <= settings.dev_lines:
        raise SettingsError(f"generaltest{settings.dev_year} {pair} has {len(sets[settings.dev_year][0])} lines, "
                            f"not more than --dev-lines {settings.dev_lines}")
    test = list(zip(*sets[settings.test_year]))
    dev_src, dev_ref = sets[settings.dev_year]
    dev = list(zip(dev_src[-settings.dev_lines:], dev_ref[-settings.dev_lines:]))
    held_out = {s.strip() for s, _ in test + dev}
    train, seen, dropped = [], set(), {"held_out": 0, "repeated": 0, "empty": 0}
    for year in years:
        if year == settings.test_year:
            continue
        rows = list(zip(*sets[year]))
        if year == settings.dev_year:
            rows = rows[:-settings.dev_lines]
        for s, r in rows:
            key = s.strip()
            reason = "empty" if not key or not r.strip() else "held_out" if key in held_out else \
                "repeated" if key in seen else None
            if reason:
                dropped[reason] += 1
                continue
            seen.add(key)
            train.append((key, r.strip()))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"pair": str(pair), "years": years, "test_year": settings.test_year, "dev_year": settings.dev_year,
               "dev_lines": settings.dev_lines, "source": settings.from_dir or "sacrebleu", "dropped_from_train": dropped,
               "splits": {}}
    for name, rows in (("train", train), ("dev", dev), ("test", test)):
        for i, lang in enumerate((pair.source, pair.target)):
            text = "".join(row[i].replace("\n", " ") + "\n" for row in rows)
            path = out / f"{name}.{pair}.{lang}"
            path.write_text(text, encoding="utf-8")
            summary["splits"].setdefault(name, {"lines": len(rows)})[lang] = hashlib.sha256(text.encode()).hexdigest()[:16]
    (out / "splits.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return {"out": str(out), **{name: s["lines"] for name, s in summary["splits"].items()}, "dropped_from_train": dropped}
