"""The Telegram channel (docs/TELEGRAM.md): python-telegram-bot inside the gateway, inbound
through a webhook route (or polling in development), outbound through a Redis-backed outbox."""
