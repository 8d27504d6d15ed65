"""The channel-neutral conversation engine: state machine, FAQ answers, escalation."""
