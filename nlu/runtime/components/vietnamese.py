"""Vietnamese-aware Rasa 3 graph components: a normalising tokenizer and folded count vectors.

* `VietnameseTokenizer` splits the message as typed and gives every token a normalised lemma
  (NFC, lower case, chat abbreviations expanded, see nlu/vi/normalize.py). Rasa's
  CountVectorsFeaturizer counts token lemmas (`use_lemma: true`, its default), so every
  featurizer after it sees "không" where the customer typed "k". The message TEXT itself is
  never rewritten, so the parse output's `text` is exactly what the user typed and no
  "restore" step is needed.
* `FoldedCountVectorsFeaturizer` is a CountVectorsFeaturizer over the diacritic-folded lemmas
  ("máy bị nổ" and "may bi no" both count as "may bi no"), added next to the normal ones so
  the classifier gets accent-exact and accent-blind features at once.

The abbreviation table is read from data/lexicon at TRAINING time and persisted into the model
(ModelStorage), so a loaded model never reads data/.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
from collections.abc import Callable
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
    CountVectorsFeaturizer,
)
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import ACTION_NAME, INTENT, INTENT_RESPONSE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.runtime.components.char_ngrams import CharWbCounter
from nlu.runtime.components.stored import CreatedUntrained
from nlu.vi import normalize, text
from nlu.vi.normalize import Lexicon, normalized_words

log = logging.getLogger(__name__)

LEXICON_KEY = "lexicon"
DEFAULT_LEXICON = "data/lexicon/abbreviations.yml"  # relative to the project root (cwd)
_STORED_LEXICON = "lexicon.json"


def _source_digest(*parts: object) -> str:
    """Hash of helper code and data that Rasa's training cache cannot see on its own."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
    return h.hexdigest()


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True)
class VietnameseTokenizer(CreatedUntrained, Tokenizer):
    """Whole-word tokenizer whose token lemmas are normalised Vietnamese/English chat.

    Trainable only so it can store the abbreviation table in the model: `train` reads the
    lexicon file and persists it, `load` reads it back from the model.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        """Tokenizer defaults plus the lexicon location (read at training time only)."""
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
            LEXICON_KEY: DEFAULT_LEXICON,
        }

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        lexicon: Lexicon | None = None,
    ) -> None:
        """`lexicon` is None only between `create` and `train`."""
        super().__init__(config)
        self._model_storage = model_storage
        self._resource = resource
        self._lexicon = lexicon

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> VietnameseTokenizer:
        """Restore the tokenizer with the lexicon stored in the model (never from data/)."""
        try:
            with model_storage.read_from(resource) as directory:
                stored = json.loads((directory / _STORED_LEXICON).read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError) as e:
            raise InvalidConfigException(
                f"{cls.__name__}: the model holds no abbreviation table ({e}); retrain it"
            ) from e
        return cls(config, model_storage, resource, Lexicon.from_dict(stored))

    @classmethod
    def _lexicon_path(cls, config: dict[str, Any]) -> Path:
        return Path(config.get(LEXICON_KEY) or DEFAULT_LEXICON)

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """Retrain (not reuse Rasa's cache) when the lexicon or the normaliser code changes."""
        path = cls._lexicon_path(config)
        data = path.read_bytes() if path.is_file() else b"<missing>"
        return _source_digest(data, inspect.getsource(normalize), inspect.getsource(text))

    def train(self, training_data: TrainingData) -> Resource:
        """Read the abbreviation table and store it in the model."""
        path = self._lexicon_path(self._config)
        if not path.is_file():
            raise InvalidConfigException(
                f"{type(self).__name__}: abbreviation table {path} not found (paths are relative "
                f"to the directory training runs in, the project root)"
            )
        try:
            self._lexicon = Lexicon.load(path)
        except ValueError as e:
            raise InvalidConfigException(f"{path}: {e}") from e
        with self._model_storage.write_to(self._resource) as directory:
            (directory / _STORED_LEXICON).write_text(
                json.dumps(self._lexicon.to_dict(), ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
        return self._resource

    def tokenize(self, message: Message, attribute: str) -> list[Token]:
        """Tokens keep the typed surface as `text`; the normalised form is the `lemma`."""
        if self._lexicon is None:
            raise RuntimeError(f"{type(self).__name__} used before training or loading")
        raw = message.get(attribute)
        words = normalized_words(raw, self._lexicon)
        if words:
            tokens = [Token(w.surface, w.start, w.end, lemma=w.norm) for w in words]
        else:
            # Like Rasa's WhitespaceTokenizer: text with no word at all ("??", an emoji) is
            # one token, so char n-gram featurizers still see something.
            stripped = raw.strip()
            start = raw.index(stripped) if stripped else 0
            tokens = [Token(stripped, start, start + len(stripped), lemma=text.nfc(stripped))]
        return self._apply_token_pattern(tokens)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class FoldedCountVectorsFeaturizer(CountVectorsFeaturizer):
    """CountVectorsFeaturizer over diacritic-folded tokens, so accent-less chat meets the
    accented training examples. Same options as CountVectorsFeaturizer (word or char_wb).

    sklearn's own `strip_accents` is not enough: it leaves "đ" as is ("đc" != "dc").
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        """Rasa's CountVectorsFeaturizer options, plus whether to emit sequence features."""
        return {
            **CountVectorsFeaturizer.get_default_config(),
            # Per-token features, for classifiers that read sequences (DIET, TED). Our
            # LinearIntentClassifier reads only sentence features; turning these off skips a
            # second sklearn transform over every token, the largest cost of a parse.
            "sequence_features": True,
        }

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """The folding lives in nlu/vi/text.py, outside this class's source."""
        return _source_digest(inspect.getsource(text))

    def _get_message_tokens_by_attribute(self, message: Message, attribute: str) -> list[str]:
        tokens = super()._get_message_tokens_by_attribute(message, attribute)
        if attribute in DENSE_FEATURIZABLE_ATTRIBUTES:
            return [text.fold(t) for t in tokens]
        return tokens

    def _process_tokens(self, tokens: list[str], attribute: str = TEXT) -> list[str]:
        """Rasa's `_process_tokens` (numbers to __NUMBER__, then lower-case), remembered
        per token: Rasa runs a regex over every token of every message for each of the two
        featurizers, though chat reuses a small vocabulary (a test compares the two)."""
        if attribute in (INTENT, ACTION_NAME, INTENT_RESPONSE_KEY):
            return tokens
        processed = self._processed_token
        return [processed(t) for t in tokens]

    @cached_property
    def _processed_token(self) -> Callable[[str], str]:
        number = re.compile(r"\b[0-9]+\b")
        lowercase = bool(self.lowercase)

        def one(token: str) -> str:
            token = number.sub("__NUMBER__", token)
            return token.lower() if lowercase else token

        return lru_cache(maxsize=65536)(one)

    @cached_property
    def _char_counters(self) -> dict[int, tuple[Any, CharWbCounter | None]]:
        """Per vectorizer (by identity; training replaces them): its fast counter, if any."""
        return {}

    def _transform(self, vectorizer: Any) -> Any:
        """`vectorizer.transform`, or the same counts word by word for char_wb n-grams."""
        found = self._char_counters.get(id(vectorizer))
        if found is None or found[0] is not vectorizer:
            counter = CharWbCounter(vectorizer) if CharWbCounter.handles(vectorizer) else None
            found = self._char_counters[id(vectorizer)] = (vectorizer, counter)
        return found[1].transform if found[1] is not None else vectorizer.transform

    def process(self, messages: list[Message]) -> list[Message]:
        """Rasa's `process`, with one sklearn `transform` per attribute for all messages.

        Rasa transforms every message on its own (two sklearn calls per message and
        attribute), which dominates the cost of parsing a micro-batch. CountVectorizer rows
        do not depend on each other, so slicing one transform of the whole batch gives the
        same matrices as one call per message: the features are identical, only cheaper
        (a test compares them with Rasa's own per-message `process`).
        """
        if self.vectorizers is None:
            return super().process(messages)  # logs that the featurizer is untrained
        with_sequence = bool(self._config.get("sequence_features", True))
        for attribute in self._attributes:
            vectorizer = self.vectorizers.get(attribute)
            tokens = [
                self._get_processed_message_tokens_by_attribute(m, attribute) for m in messages
            ]
            present = [t for t in tokens if t]
            if not vectorizer or not present:
                for m in messages:
                    self.add_features_to_message(None, None, attribute, m)
                continue
            transform = self._transform(vectorizer)
            sequences = transform([w for t in present for w in t]) if with_sequence else None
            sentences = (
                transform([" ".join(t) for t in present])
                if attribute in DENSE_FEATURIZABLE_ATTRIBUTES
                else None
            )
            if sequences is not None:
                sequences.sort_indices()  # per row, as Rasa sorts each message's matrix
            if sentences is not None:
                sentences.sort_indices()
            row = sentence = 0
            for m, t in zip(messages, tokens, strict=True):
                if not t:
                    self.add_features_to_message(None, None, attribute, m)
                    continue
                seq = _rows(sequences, row, row + len(t)) if sequences is not None else None
                row += len(t)
                sent = _rows(sentences, sentence, sentence + 1) if sentences is not None else None
                sentence += 1
                self.add_features_to_message(seq, sent, attribute, m)
        return messages


def _rows(matrix: scipy.sparse.csr_matrix, start: int, stop: int) -> scipy.sparse.coo_matrix:
    """Rows start..stop of a CSR matrix as COO, equal to `matrix[start:stop].tocoo()`.

    Built straight from the CSR arrays: scipy's constructor re-derives and re-checks index
    types and bounds on every call, which on a micro-batch (one or two matrices per message
    and featurizer) cost more than the sklearn transform itself. The arrays come from a
    validated CSR matrix, so those checks cannot fail here; a test compares the result with
    scipy's own slicing.
    """
    indptr = matrix.indptr[start : stop + 1]
    a, b = indptr[0], indptr[-1]
    n = stop - start
    rows = (
        np.zeros(b - a, dtype=matrix.indices.dtype)
        if n == 1
        else np.repeat(np.arange(n, dtype=matrix.indices.dtype), np.diff(indptr))
    )
    coo = scipy.sparse.coo_matrix.__new__(scipy.sparse.coo_matrix)
    scipy.sparse.spmatrix.__init__(coo)
    coo._shape = (n, matrix.shape[1])
    coo.row, coo.col, coo.data = rows, matrix.indices[a:b], matrix.data[a:b]
    coo.has_canonical_format = False  # as scipy's tocoo() marks it
    return coo


__all__ = ["FoldedCountVectorsFeaturizer", "VietnameseTokenizer"]
