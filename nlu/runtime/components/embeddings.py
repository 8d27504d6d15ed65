"""Pretrained static token embeddings as a dense sentence feature (WordLlama l2_supercat).

Why: TF-IDF n-grams only know the words of the training data. A customer who says "the
battery is bulging" where training said "the battery swelled" shares no n-gram with it,
but pretrained token vectors put the two near each other. WordLlama's vectors (256
dimensions, a 32,000-token vocabulary, MIT licence) are a token embedding table trained
for sentence similarity: a sentence is the mean of its tokens' vectors, so the cost is a
tokenizer call and a table lookup, not a neural network. On HINT3-shaped draws from
CLINC150/BANKING77 training data they raised in-scope accuracy without costing
out-of-scope recall (docs/BENCHMARKS.md, "Pretrained token vectors").

The table is not downloaded at run time: `make nlu-env` takes it from the wordllama wheel
on PyPI (scripts/fetch-embeddings.sh, checked by SHA-256) into var/embeddings/. Training
copies it into the model, so a trained model never reads var/.

The vectors were trained on English-heavy text, and their tokenizer cuts Vietnamese into
byte pieces: on data/nlu cross-validation, embedding every message cost the Vietnamese
slices. So messages detected as Vietnamese (`skip_languages`) get a zero vector and are
classified on their n-grams alone, as before.

Sentence features only: the linear classifier reads nothing else. A DIET after this would
need sequence features, which this component does not produce.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.runtime.components.stored import CreatedUntrained
from nlu.runtime.components.vietnamese import _source_digest
from nlu.vi.text import detect_language

log = logging.getLogger(__name__)

# The tokenizer's own thread pool would compete with the NLU service's event loop for the
# two cores, and batches are small: one thread was faster per message (bench/nlu_profile.py).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PATH_KEY = "path"
SKIP_KEY = "skip_languages"
DEFAULT_PATH = "var/embeddings/wordllama-l2-supercat-256"  # relative to the project root (cwd)
TABLE_FILE = "embedding.safetensors"
TOKENIZER_FILE = "tokenizer.json"
_TENSOR = "embedding.weight"
_STORED_TABLE = "embedding.npy"
_STORED_TOKENIZER = "tokenizer.json"
_STORED_META = "embedding.json"


class SentenceEmbedder:
    """Mean of the token vectors, scaled to unit length (zero for a text with no tokens)."""

    def __init__(self, table: np.ndarray, tokenizer_json: str) -> None:
        from tokenizers import Tokenizer

        self.table = np.ascontiguousarray(table, dtype=np.float32)
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        if vocab > self.table.shape[0]:  # a table from another model: ids would miss rows
            raise InvalidConfigException(
                f"token vectors: the tokenizer has {vocab} tokens but the table "
                f"{self.table.shape[0]} rows"
            )

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        """One row per text; the same row whether a text comes alone or in a batch (each
        row is its own sum, in token order, then scaled)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((i for row in ids for i in row), dtype=np.int64, count=lengths.sum())
        if not flat.size:
            return out
        some = lengths > 0
        starts = (np.cumsum(lengths) - lengths)[some]
        out[some] = np.add.reduceat(self.table[flat], starts, axis=0) / lengths[some, None]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class StaticEmbeddingFeaturizer(CreatedUntrained, DenseFeaturizer, GraphComponent):
    """Dense sentence features of TEXT: the unit-length mean of pretrained token vectors.

    Trainable only so the vectors travel inside the model: `train` reads them from
    `path` and persists them, `load` reads them back from the model.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        """Featurizer defaults plus where the vectors are read from at training time."""
        return {**DenseFeaturizer.get_default_config(), PATH_KEY: DEFAULT_PATH, SKIP_KEY: []}

    @staticmethod
    def required_packages() -> list[str]:
        """The tokenizer of the vectors (Hugging Face `tokenizers`, in requirements/nlu.lock)."""
        return ["tokenizers"]

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        """`skip_languages` must be a list of codes; a missing `path` is reported by `train`."""
        skip = config.get(SKIP_KEY) or []
        if not isinstance(skip, list) or not all(isinstance(x, str) for x in skip):
            raise InvalidConfigException(
                f"{cls.__name__}: {SKIP_KEY} must be a list of language codes, got {skip!r}"
            )

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        embedder: SentenceEmbedder | None = None,
    ) -> None:
        """`embedder` is None only between `create` and `train`."""
        super().__init__(resource.name, {**self.get_default_config(), **config})
        self._model_storage = model_storage
        self._resource = resource
        self._embedder = embedder

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> StaticEmbeddingFeaturizer:
        """Restore the vectors stored in the model (never from var/)."""
        try:
            with model_storage.read_from(resource) as directory:
                table = np.load(directory / _STORED_TABLE, allow_pickle=False)
                tokenizer = (directory / _STORED_TOKENIZER).read_text(encoding="utf-8")
        except (ValueError, FileNotFoundError) as e:
            raise InvalidConfigException(
                f"{cls.__name__}: the model holds no token vectors ({e}); retrain it"
            ) from e
        return cls(config, model_storage, resource, SentenceEmbedder(table, tokenizer))

    @classmethod
    def _files(cls, config: dict[str, Any]) -> tuple[Path, Path]:
        root = Path(config.get(PATH_KEY) or DEFAULT_PATH)
        return root / TABLE_FILE, root / TOKENIZER_FILE

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> str | None:
        """Retrain (not reuse Rasa's cache) when the vectors change."""
        return _source_digest(*(p.read_bytes() if p.is_file() else b"<missing>"
                                 for p in cls._files(config)))  # fmt: skip

    def train(self, training_data: TrainingData) -> Resource:
        """Read the vectors and store them in the model."""
        from safetensors.numpy import load_file

        table_path, tokenizer_path = self._files(self._config)
        missing = [str(p) for p in (table_path, tokenizer_path) if not p.is_file()]
        if missing:
            raise InvalidConfigException(
                f"{type(self).__name__}: {', '.join(missing)} not found. `make nlu-env` "
                f"fetches them (scripts/fetch-embeddings.sh); paths are relative to the "
                f"directory training runs in, the project root"
            )
        tensors = load_file(str(table_path))
        if _TENSOR not in tensors or tensors[_TENSOR].ndim != 2:
            raise InvalidConfigException(f"{table_path}: no 2-D tensor named {_TENSOR!r}")
        # float16 keeps the model archive small; the embedder computes in float32
        table = tensors[_TENSOR].astype(np.float16)
        tokenizer = tokenizer_path.read_text(encoding="utf-8")
        self._embedder = SentenceEmbedder(table, tokenizer)
        with self._model_storage.write_to(self._resource) as directory:
            np.save(directory / _STORED_TABLE, table, allow_pickle=False)
            (directory / _STORED_TOKENIZER).write_text(tokenizer, encoding="utf-8")
            (directory / _STORED_META).write_text(
                json.dumps({"source": str(table_path.parent), "shape": list(table.shape)})
            )
        return self._resource

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Featurize every training example that has a text."""
        self.process(training_data.training_examples)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        """One dense sentence feature (1 × dim) per message with a text."""
        if self._embedder is None:
            raise RuntimeError(f"{type(self).__name__} used before training or loading")
        skip = set(self._config.get(SKIP_KEY) or [])
        with_text = [m for m in messages if m.get(TEXT)]
        wanted = [not skip or detect_language(m.get(TEXT)) not in skip for m in with_text]
        texts = [m.get(TEXT) for m, w in zip(with_text, wanted, strict=True) if w]
        vectors = iter(self._embedder.embed(texts))
        zero = np.zeros(self._embedder.dim, dtype=np.float32)
        for m, w in zip(with_text, wanted, strict=True):
            v = next(vectors) if w else zero
            self.add_features_to_message(None, v.reshape(1, -1), TEXT, m)
        return messages


__all__ = ["SentenceEmbedder", "StaticEmbeddingFeaturizer"]
