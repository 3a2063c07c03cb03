"""Quality (sacrebleu, COMET), latency (AL, LAAL, DAL, AP; StreamLAAL for long unsegmented streams)
and flicker (normalized erasure) metrics."""
