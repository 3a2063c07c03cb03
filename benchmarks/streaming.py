"""Streaming decoding modes vs offline decoding (ExPosST, MISSION.md sec. 2): prints a Markdown table.

Same code as `seqpo bench`; e.g.
    PYTHONPATH=src python benchmarks/streaming.py --pair en-de \
        --src /work/shared/data/wmt/generaltest2022.en-de.en --limit 4
"""

import sys

from seqpo.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
