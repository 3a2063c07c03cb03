"""Quality (sacrebleu, COMET) and latency (AL, LAAL, DAL, AP) metrics."""
