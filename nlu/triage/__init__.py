"""Severity triage: how dangerous and how urgent a customer's problem is, and which queue
should take it, from the lexicon and the learned model's reading together (see triage.py)."""
