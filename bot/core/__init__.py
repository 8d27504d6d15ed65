"""The shared ground every other layer stands on: settings, the SQL store, Redis helpers,
the shared vocabulary and metrics. It imports nothing of careline above it."""
