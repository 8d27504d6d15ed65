"""Custom Rasa graph components, referenced from config.yml by full module path.

NLU runtime only (Python 3.10, imports rasa); the text logic they call lives in nlu/vi.
"""
