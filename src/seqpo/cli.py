"""`seqpo` command line: thin wrappers that parse settings, call the library and print."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import __version__
from .config import add_settings, build_settings
from .errors import SeqpoError

DESCRIPTION = """\
seqpo: simultaneous machine translation with LLMs.

The source arrives in reads of --chunk words (characters for Chinese/Japanese sources); after each
read a policy writes a target segment or waits. Policies: offline (wait for the whole sentence),
wait-k (start after k reads, then keep pace), llm (the model decides; SeqPO-SiMT).
The default model is the bundled Gemma-3-270M (dequantized and cached on first use, see
SEQPO_CACHE)."""


def _cmd_translate(args) -> int:
    from .translate import TranslateSettings, translate

    translate(build_settings(TranslateSettings, args))
    return 0


def _cmd_eval(args) -> int:
    from .evaluate import EvalSettings, evaluate

    settings = build_settings(EvalSettings, args)
    scores = evaluate(settings, progress=not args.quiet)
    shown = {k: v for k, v in scores.items() if k != "signature"}
    print(json.dumps(shown, ensure_ascii=False))
    return 0


def _cmd_serve(args) -> int:
    from .serve import ServeSettings, serve

    serve(build_settings(ServeSettings, args))
    return 0


def _cmd_bench(args) -> int:
    from .bench import BenchSettings, markdown_table, run_bench

    rows = run_bench(build_settings(BenchSettings, args), log=lambda m: print(m, file=sys.stderr))
    print(markdown_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .bench import BenchSettings
    from .evaluate import EvalSettings
    from .serve import ServeSettings
    from .translate import TranslateSettings

    parser = argparse.ArgumentParser(prog="seqpo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"seqpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "translate", help="stream text through a policy and watch it translate",
        description="Translate TEXT (or stdin, one sentence per line) read by read. In a terminal a live "
        "view shows the source arriving and the translation following; --json prints one event per "
        'step ({"type": "write"|"wait", ...}) and a final {"type": "done", "prediction", "AL", "LAAL"}.',
    )
    add_settings(p, TranslateSettings, positional=("text",))
    p.set_defaults(func=_cmd_translate)

    p = sub.add_parser(
        "eval", help="evaluate a policy on a test set (BLEU, chrF, AL, LAAL, DAL, AP)",
        description="Stream every source line through a policy. Writes OUT/instances.jsonl (SimulEval "
        "instance fields, one line per finished sentence) and OUT/scores.json (quality, latency and "
        "the settings that produced them). Re-running with the same --out resumes.",
    )
    add_settings(p, EvalSettings)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "serve", help="live translation server: WebSocket, HTTP API and a web page",
        description="Serve live translation on http://HOST:PORT/ (web page), ws://HOST:PORT/ws/translate "
        "(stream text, get write/wait/done events), POST /translate, GET /health and GET /metrics.",
    )
    add_settings(p, ServeSettings)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "bench", help="time the decoding modes (reencode, append, slots) against offline decoding",
        description="Stream the first --limit lines of --src through a policy once per decoding mode, and "
        "decode them offline, in one run; print a Markdown table (tokens through the model, wall time, "
        "ms per output token, time to first write, ratio to offline) and rollouts per minute for a "
        "forked group vs separate episodes.",
    )
    add_settings(p, BenchSettings)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="seqpo: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except SeqpoError as exc:
        print(f"seqpo {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"seqpo {args.command}: interrupted (finished work is kept; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
