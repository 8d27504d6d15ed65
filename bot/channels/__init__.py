"""Channels: adapters between a platform (the website widget, Telegram) and the
channel-neutral conversation engine."""
