"""seqpo: simultaneous machine translation with LLMs, trained with SeqPO-SiMT (arXiv 2505.20622)."""

__version__ = "0.2.0"
