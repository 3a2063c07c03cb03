"""Streaming decoding modes vs offline decoding (ExPosST, Shang et al., arXiv 2603.14903): prints a Markdown table.

Same code as `seqpo bench`; e.g. on a WMT general test set (docs/data.md):
    PYTHONPATH=src python benchmarks/streaming.py --pair en-de \
        --src $SEQPO_DATA/wmt/generaltest2022.en-de.en --limit 4
"""

import sys

from seqpo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
