"""Developer tools that read the code itself (run with python -m)."""
