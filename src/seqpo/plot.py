"""Figures: training curves of a `seqpo train` run, and quality-latency points of `seqpo eval` runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import setting
from .errors import InputFileError
from .resume import read_complete_jsonl

CURVES = [("reward_mean", "reward (mean)"), ("quality", "sentence quality"), ("AL", "AL"),
          ("wait_fraction", "wait fraction"), ("kl", "KL to reference"), ("tokens_per_s", "rollout tokens/s")]


@dataclass
class PlotSettings:
    run: str = setting(None, "a `seqpo train` output folder: draws RUN/curves.png from RUN/log.jsonl")
    eval: str = setting(None, "comma-separated `seqpo eval` output folders: one quality-latency point each "
                        "(label = folder name, or LABEL=FOLDER)")
    out: str = setting(None, "PNG to write (default RUN/curves.png, or quality_latency.png)")
    metric: str = setting("BLEU", "quality axis for --eval", choices=["BLEU", "chrF", "COMET"])
    latency: str = setting("AL", "latency axis for --eval (StreamLAAL, LongYAAL: `seqpo eval --long-form` runs)",
                           choices=["AL", "LAAL", "DAL", "AP", "YAAL", "StreamLAAL", "LongYAAL"])


def _pyplot():
    import matplotlib  # here, on first plot: choosing the Agg backend at import would change it for the importer

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # after matplotlib.use: the backend is fixed when pyplot loads

    return plt


def plot_training(run: str | Path, out: str | Path | None = None) -> Path:
    run = Path(run)
    records = read_complete_jsonl(run / "log.jsonl", truncate=False) if (run / "log.jsonl").exists() else []
    steps = [r for r in records if "eval" not in r]
    evals = [r for r in records if "eval" in r]
    if not steps:
        raise InputFileError(f"{run} has no training log (log.jsonl with steps)")
    plt = _pyplot()
    panels = CURVES + ([("eval", "dev BLEU / AL")] if evals else [])
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    x = [r["step"] for r in steps]
    for ax, (key, title) in zip(axes.flat, panels):
        if key == "eval":
            ex = [r["step"] for r in evals]
            ax.plot(ex, [r["eval"].get("BLEU") for r in evals], "o-", label="BLEU")
            ax2 = ax.twinx()
            ax2.plot(ex, [r["eval"].get("AL") for r in evals], "s--", color="tab:red", label="AL")
            ax2.set_ylabel("AL")
            ax.set_ylabel("BLEU")
        else:
            y = [r.get(key) for r in steps]
            ax.plot(x, y, "-", lw=1, alpha=0.5 if len(y) >= 6 else 1)
            if len(y) >= 6 and None not in y:  # a few sentences per step is noisy: show the trend
                w = max(3, len(y) // 10)
                ax.plot(x[w - 1 :], [sum(y[i - w + 1 : i + 1]) / w for i in range(w - 1, len(y))], "-", lw=2,
                        label=f"mean of {w} steps")
                ax.legend(fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"seqpo train: {run.name}")
    fig.tight_layout()
    target = Path(out) if out else run / "curves.png"
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def plot_quality_latency(folders: list[str], out: str | Path, metric: str = "BLEU", latency: str = "AL") -> Path:
    """One point per `seqpo eval` folder (its scores.json); "LABEL=FOLDER" names a point."""
    points = []
    for item in folders:
        label, _, folder = item.rpartition("=") if "=" in item else (None, "", item)
        path = Path(folder) / "scores.json"
        if not path.is_file():
            raise InputFileError(f"no scores.json in {folder}")
        points.append((label or Path(folder).name, json.loads(path.read_text())))
    return draw_quality_latency(points, out, metric, latency)


def point_label(label: str, scores: dict) -> str:
    """A chart point's text: re-translation (which shows text it later takes back, drawn as a
    diamond) carries its normalized erasure, so it compares with the incremental policies on one chart."""
    return label if scores.get("NE") is None else f"{label} (NE {scores['NE']:.2f})"


def draw_quality_latency(points: list[tuple[str, dict]], out: str | Path, metric: str = "BLEU",
                         latency: str = "AL", title: str | None = None) -> Path:
    """(label, scores) pairs on a quality vs latency chart."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, scores in points:
        if scores.get(metric) is None or scores.get(latency) is None:
            raise InputFileError(f"scores of '{label}' have no {metric} or {latency}")
        ax.plot(scores[latency], scores[metric], "D" if scores.get("NE") is not None else "o")
        ax.annotate(point_label(label, scores), (scores[latency], scores[metric]), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xlabel(f"{latency} (lower is faster)")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def run_plot(settings: PlotSettings) -> Path:
    if bool(settings.run) == bool(settings.eval):
        raise InputFileError("give a run folder (seqpo plot RUN) or --eval FOLDERS, not both")
    if settings.run:
        return plot_training(settings.run, settings.out)
    folders = [f.strip() for f in settings.eval.split(",") if f.strip()]
    return plot_quality_latency(folders, settings.out or "quality_latency.png", settings.metric, settings.latency)
