"""Live state in Redis: conversation event logs, the engine's inbox, locks, rate limits.

Shared by every gateway replica; the embedded default uses an in-process stand-in.
"""
