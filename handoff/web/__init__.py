"""The help desk's web adapters: the agent console's HTTP API and WebSocket."""
