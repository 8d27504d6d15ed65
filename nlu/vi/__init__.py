"""Vietnamese text utilities, pure Python, shared by the gateway and the NLU runtime."""

from nlu.vi.text import detect_language, has_diacritics, nfc, strip_diacritics

__all__ = ["detect_language", "has_diacritics", "nfc", "strip_diacritics"]
