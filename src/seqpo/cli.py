"""`seqpo` command line: thin wrappers that parse settings, call the library and print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import textwrap

from . import __version__
from .bench_settings import BenchSettings
from .config import add_settings, build_settings
from .data.long_form import LongFormSettings, build_long_form
from .data.partial_settings import PartialDataSettings
from .data.wmt import WmtDataSettings, build_wmt
from .errors import SeqpoError
from .eval_settings import EvalSettings
from .plot import PlotSettings, run_plot
from .policies import POLICIES
from .rl.train_settings import TrainSettings
from .serve import ServeSettings, serve
from .sft_settings import SFTSettings
from .speech.synth import SpeechDataSettings, build_speech_data
from .translate_settings import TranslateSettings

# The commands that run a model are imported when run (start-up cost): they load torch and
# transformers (seconds), which `seqpo --help` and the data commands do without. Their settings,
# which build the flags, are torch-free modules beside them.

# the policies listed from the registry (`seqpo.policies.POLICIES`), so a new one shows up here
DESCRIPTION = "seqpo: simultaneous machine translation with LLMs.\n\n" + textwrap.fill(
    "The source arrives in reads of --chunk words (characters for Chinese/Japanese sources); after each "
    "read a policy writes a target segment or waits. Policies: "
    + ", ".join(f"{p.name} ({p.summary})" for p in POLICIES)
    + ". The default model is the bundled Gemma-3-270M (dequantized and cached on first use, see SEQPO_CACHE).",
    width=100)


def _cmd_translate(args) -> int:
    from .translate import translate  # start-up cost: torch (see the imports above)

    translate(build_settings(TranslateSettings, args))
    return 0


def _cmd_eval(args) -> int:
    from .evaluate import evaluate  # start-up cost: torch

    settings = build_settings(EvalSettings, args)
    scores = evaluate(settings, progress=not args.quiet)
    shown = {k: v for k, v in scores.items() if k != "signature"}
    print(json.dumps(shown, ensure_ascii=False))
    return 0


def _cmd_serve(args) -> int:
    serve(build_settings(ServeSettings, args))
    return 0


def _cmd_data_partial(args) -> int:
    from .data.build import build_partial  # start-up cost: torch

    summary = build_partial(build_settings(PartialDataSettings, args), progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def _cmd_data_speech(args) -> int:
    print(json.dumps(build_speech_data(build_settings(SpeechDataSettings, args))))
    return 0


def _cmd_data_long_form(args) -> int:
    print(json.dumps(build_long_form(build_settings(LongFormSettings, args))))
    return 0


def _cmd_data_wmt(args) -> int:
    print(json.dumps(build_wmt(build_settings(WmtDataSettings, args))))
    return 0


def _cmd_sft(args) -> int:
    from .sft import train_sft  # start-up cost: torch

    out = train_sft(build_settings(SFTSettings, args), progress=not args.quiet,
                    command="seqpo " + " ".join(shlex.quote(a) for a in args.argv))
    print(json.dumps({"adapter": str(out)}))
    return 0


def _cmd_bench(args) -> int:
    from .bench import markdown_table, run_bench  # start-up cost: torch

    rows = run_bench(build_settings(BenchSettings, args), log=lambda m: print(m, file=sys.stderr))
    print(markdown_table(rows))
    return 0


def _cmd_train(args) -> int:
    from .rl.train import train  # start-up cost: torch

    out = train(build_settings(TrainSettings, args), progress=not args.quiet,
                command="seqpo " + " ".join(shlex.quote(a) for a in args.argv))
    print(json.dumps({"adapter": str(out), "log": str(out / "log.jsonl")}))
    return 0


def _cmd_plot(args) -> int:
    print(run_plot(build_settings(PlotSettings, args)))
    return 0


def _add_command(sub, name: str, settings_cls, func, help: str, description: str,
                 positional: tuple[str, ...] = (), quiet: bool = False) -> argparse.ArgumentParser:
    """One subcommand: flags from its settings dataclass, optionally --quiet, and its handler."""
    p = sub.add_parser(name, help=help, description=description)
    add_settings(p, settings_cls, positional=positional)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqpo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"seqpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _add_command(
        sub, "translate", TranslateSettings, _cmd_translate, positional=("text",),
        help="stream text through a policy and watch it translate",
        description="Translate TEXT (or stdin, one sentence per line) read by read. In a terminal a live "
        "view shows the source arriving and the translation following; --json prints one event per "
        'step ({"type": "write"|"wait", ...}) and a final {"type": "done", "prediction", "AL", "LAAL"}. '
        "--audio FILE (wav, flac, mp3, m4a, ogg, ...) translates speech instead: a streaming "
        "Whisper (tiny.en for English; --asr base also for German, Chinese, Japanese) turns the audio "
        "into words as they become stable, every event carries audio_ms, latency is in ms of audio.",
    )
    _add_command(
        sub, "eval", EvalSettings, _cmd_eval, quiet=True,
        help="evaluate a policy on a test set (BLEU, chrF, AL, LAAL, DAL, AP)",
        description="Stream every source line through a policy. Writes OUT/instances.jsonl (SimulEval "
        "instance fields, one line per finished sentence) and OUT/scores.json (quality, latency and "
        "the settings that produced them). Re-running with the same --out resumes. --audio-dir DIR "
        "evaluates speech (a folder of audio files, see `seqpo data speech`) with latency in ms "
        "of audio and ASR WER.",
    )
    data = sub.add_parser("data", help="build training data (partial-translation pairs for warm-up SFT)")
    data_sub = data.add_subparsers(dest="data_command", metavar="KIND", required=True)
    _add_command(
        data_sub, "partial", PartialDataSettings, _cmd_data_partial, quiet=True,
        help="one example per read: source prefix, target so far -> next segment",
        description="For every sentence and every read of --chunk source units, write one JSON line: "
        "source_prefix, target_prefix, segment (\"\" = wait), final. Segments slice the reference, so they "
        "concatenate to it exactly. Builders: agreement (offline: local agreement between the model's "
        "translations of each prefix and of the whole sentence) or teacher (a strong LLM aligns chunks). "
        "Re-running with the same --out resumes; prints a summary (examples, wait fraction, mean segment length).",
    )
    _add_command(
        data_sub, "speech", SpeechDataSettings, _cmd_data_speech,
        help="synthesize speech in the source language (espeak-ng) for seqpo eval --audio-dir",
        description="Speak every --src line with espeak-ng into OUT/NNNN.wav (16 kHz mono) and copy the "
        "transcripts to OUT/source.<src> and the references to OUT/reference.<tgt>. Existing wavs are kept only "
        "if OUT/synth.jsonl records the same text, voice and rate.",
    )
    _add_command(
        data_sub, "long-form", LongFormSettings, _cmd_data_long_form,
        help="talk-length streams for StreamLAAL: --lines consecutive lines joined into one source",
        description="Join every --lines consecutive lines of --src into one source stream without sentence "
        "boundaries and write one JSON line per stream: source, references, source_offsets and source_lengths "
        "(in source units) and the lines used. Re-running with the same --out appends only missing streams.",
    )
    _add_command(
        data_sub, "wmt", WmtDataSettings, _cmd_data_wmt,
        help="a pair's WMT general test sets as train/dev/test files (sacrebleu download or --from DIR)",
        description="Take the WMT general test sets of --pair for every --year (downloaded through sacrebleu, or "
        "from --from DIR holding generaltest{year}.{pair}.{lang}) and write OUT/train|dev|test.{pair}.{lang}: "
        "the whole --test-year set is the test split, the last --dev-lines lines of --dev-year the dev split, "
        "every other line training data (minus lines whose source is in dev or test, and repeats). "
        "OUT/splits.json records the split. Re-running rewrites the same files.",
    )
    _add_command(
        sub, "sft", SFTSettings, _cmd_sft, quiet=True,
        help="warm-up LoRA fine-tuning on partial-translation pairs",
        description="Fine-tune a LoRA adapter (peft) on examples from `seqpo data partial`, with the loss only "
        "on the next segment and its end-of-line marker. Checkpoints go to OUT/checkpoints and a re-run resumes "
        "from the last one; the final adapter is saved in OUT (use it with --adapter OUT). Runs unchanged under "
        "`accelerate launch -m seqpo.cli sft ...` on several GPUs.",
    )
    _add_command(
        sub, "train", TrainSettings, _cmd_train, quiet=True,
        help="SeqPO policy optimisation: multi-step GRPO with the fused quality/latency reward",
        description="Start from a LoRA policy (--adapter, by default the SFT adapter shipped for the pair), "
        "sample --group streaming episodes per training sentence, reward each whole episode (quality "
        "and Average Lagging, normalised within the group, latency truncated at --chunk) and update every "
        "sampled token with the clipped GRPO loss plus a KL penalty to the same network with its adapter "
        "disabled. OUT gets log.jsonl (one line per step), checkpoints (a re-run resumes exactly) and the "
        "final adapter (--adapter OUT). Runs under `accelerate launch -m seqpo.cli train ...` on several GPUs.",
    )
    _add_command(
        sub, "plot", PlotSettings, _cmd_plot, positional=("run",),
        help="draw training curves (seqpo plot RUN) or a quality-latency chart (--eval DIRS)",
        description="seqpo plot RUN writes RUN/curves.png (reward, quality, AL, wait fraction, KL, tokens/s "
        "and dev scores per step). seqpo plot --eval wait3=DIR,sft=DIR,... --out FILE.png places each "
        "`seqpo eval` folder on a quality (BLEU) vs latency (AL) chart.",
    )
    _add_command(
        sub, "serve", ServeSettings, _cmd_serve,
        help="live translation server: WebSocket, HTTP API and a web page",
        description="Serve live translation on http://HOST:PORT/ (web page), ws://HOST:PORT/ws/translate "
        "(stream text, get write/wait/done events), POST /translate, GET /health and GET /metrics.",
    )
    _add_command(
        sub, "bench", BenchSettings, _cmd_bench,
        help="time the decoding modes (reencode, append, slots) against offline decoding",
        description="Stream the first --limit lines of --src through a policy once per decoding mode, and "
        "decode them offline, in one run; print a Markdown table (tokens through the model, wall time, "
        "ms per output token, time to first write, ratio to offline) and rollouts per minute for a "
        "forked group vs separate episodes.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="seqpo: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that make artifacts
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except SeqpoError as exc:
        print(f"seqpo {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into a reader that stopped (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit flush
        return 0
    except KeyboardInterrupt:
        print(f"seqpo {args.command}: interrupted (finished work is kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
