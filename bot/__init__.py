"""careline gateway: channels, conversation engine, agent console and the `careline` CLI."""
