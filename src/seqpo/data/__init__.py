"""Warm-up data for SeqPO: partial-translation pairs (source prefix, target so far -> next segment)."""
