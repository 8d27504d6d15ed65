"""Hand-off to people: severity triage (triage.py) and, later, the agent queues.

`Triage.from_settings(settings).classify(text, intent=..., confidence=...)` says how urgent a
customer message is and which queue should see it; the words it relies on live in
data/triage/lexicon.yml, the thresholds under careline.triage in config.yml.
"""
