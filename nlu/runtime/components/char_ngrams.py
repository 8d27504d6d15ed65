"""sklearn's `CountVectorizer.transform` for `analyzer="char_wb"`, counted word by word.

Why: char_wb n-grams never cross a space, so a message's counts are the sum of its words'
counts, and chat reuses a small vocabulary. sklearn builds and looks up every n-gram of
every message in Python (about 150 per short message, the largest single cost of a parse);
here each distinct word's vocabulary indices are worked out once and remembered (bounded
LRU), and a message only adds up its words' lists. The matrix is the one sklearn returns
(same dtypes, sorted indices): a test compares them on all project texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse

# Words longer than this are rare (URLs, keyboard mashing) and would bloat the cache.
_CACHED_WORD_CHARS = 32
_CACHED_WORDS = 65536


class CharWbCounter:
    """Counts of a fitted char_wb `CountVectorizer`'s vocabulary in documents."""

    def __init__(self, vectorizer: Any) -> None:
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._width = len(self._vocabulary)
        self._preprocess = vectorizer.build_preprocessor()
        self._decode = vectorizer.decode
        self._min_n, self._max_n = vectorizer.ngram_range
        self._dtype = vectorizer.dtype
        self._binary = bool(vectorizer.binary)
        self._cached_word = lru_cache(maxsize=_CACHED_WORDS)(self._word)

    @staticmethod
    def handles(vectorizer: Any) -> bool:
        """Only the configuration whose n-grams are known to stay inside words."""
        return (
            getattr(vectorizer, "analyzer", None) == "char_wb"
            and hasattr(vectorizer, "vocabulary_")
            and vectorizer.stop_words is None
        )

    def _word(self, word: str) -> tuple[int, ...]:
        """Vocabulary indices of one word's n-grams, in sklearn's order (its
        `_char_wb_ngrams` loop for one word), out-of-vocabulary ones left out."""
        vocabulary = self._vocabulary
        w = " " + word + " "
        w_len = len(w)
        out: list[int] = []
        for n in range(self._min_n, self._max_n + 1):
            offset = 0
            idx = vocabulary.get(w[offset : offset + n])
            if idx is not None:
                out.append(idx)
            while offset + n < w_len:
                offset += 1
                idx = vocabulary.get(w[offset : offset + n])
                if idx is not None:
                    out.append(idx)
            if offset == 0:  # count a short word (w_len < n) only once
                break
        return tuple(out)

    def transform(self, documents: Sequence[str]) -> scipy.sparse.csr_matrix:
        """Like `vectorizer.transform(documents)`."""
        found: list[int] = []
        lengths: list[int] = []
        for doc in documents:
            before = len(found)
            # sklearn collapses whitespace runs and splits on whitespace: the same words
            for word in self._preprocess(self._decode(doc)).split():
                found += (
                    self._cached_word(word) if len(word) <= _CACHED_WORD_CHARS else self._word(word)
                )
            lengths.append(len(found) - before)
        n = len(lengths)
        # count (document, index) pairs in one vectorised pass: sorted by document, then
        # index, which is CSR order with sorted indices
        doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
        keys, counts = np.unique(doc * self._width + np.asarray(found, dtype=np.int64),
                                 return_counts=True)  # fmt: skip
        rows = keys // self._width
        indptr = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        x = scipy.sparse.csr_matrix(
            (counts.astype(np.intc), (keys % self._width).astype(np.int32), indptr),
            shape=(n, self._width),
            dtype=self._dtype,
        )
        x.has_sorted_indices = True
        if self._binary:
            x.data.fill(1)
        return x


__all__ = ["CharWbCounter"]
