"""Severity and queue of a customer message, as a component of the Rasa NLU pipeline.

Why in the pipeline: the gateway already sends every message to the NLU service, which
batches concurrent requests; scoring severity there costs one more matrix product in that
batch instead of a second service or a second round trip. `/model/parse` then carries the
verdict under `careline` (`severity`, `queue`, per-class `scores`).

The model (nlu/runtime/severity_model.py) is trained on the triage corpus (`corpus`, JSONL
folders relative to the project root), not on Rasa's intent examples, and stored in the
model file. It reads the message together with the customer's earlier messages when the
caller sends them (message metadata `careline_context`, set by the NLU service from the
request's `context`), so a hazard told over two messages is one hazard.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.runtime.components.stored import CreatedUntrained
from nlu.runtime.severity_model import (
    CONTEXT_KEY,
    MAX_CONTEXT,
    OUTPUT_KEY,
    CorpusError,
    SeverityModel,
    read_corpus,
    window_text,
)
from nlu.vi.normalize import Lexicon

log = logging.getLogger(__name__)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class SeverityClassifier(CreatedUntrained, GraphComponent):
    """Learned severity (critical/high/normal/low) and queue, with per-class scores."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "corpus": ["data/triage/corpus/train"],  # JSONL folders or files
            "abbreviations": "data/lexicon/abbreviations.yml",
            "C": 8.0,
            "random_seed": 42,
        }

    @staticmethod
    def required_packages() -> list[str]:
        return ["sklearn"]

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        model: SeverityModel | None = None,
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self._model = model

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SeverityClassifier:
        try:
            with model_storage.read_from(resource) as directory:
                model = SeverityModel.load(directory)
        except (ValueError, FileNotFoundError) as e:
            raise InvalidConfigException(
                f"{cls.__name__}: the model holds no severity model ({e}); retrain it"
            ) from e
        return cls(config, model_storage, resource, model)

    def train(self, training_data: TrainingData) -> Resource:
        """Fit on the triage corpus (the intent examples are not severity labels)."""
        corpus = self._config["corpus"]
        paths = [Path(p) for p in ([corpus] if isinstance(corpus, str) else corpus)]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise InvalidConfigException(
                f"{type(self).__name__}: triage corpus {missing} not found (paths are relative "
                "to the directory training runs in, the project root)"
            )
        try:
            rows = read_corpus(paths)
            lexicon = Lexicon.load(Path(self._config["abbreviations"]))
        except (CorpusError, ValueError, OSError) as e:
            raise InvalidConfigException(f"{type(self).__name__}: {e}") from e
        if len({r.severity for r in rows}) < 2:
            raise InvalidConfigException(f"{type(self).__name__}: {paths} hold too few labels")
        self._model = SeverityModel.fit(
            [r.example() for r in rows],
            lexicon,
            c=float(self._config["C"]),
            seed=int(self._config["random_seed"]),
        )
        log.info("severity model trained on %d messages", len(rows))
        with self._model_storage.write_to(self._resource) as directory:
            self._model.save(directory)
        return self._resource

    def process(self, messages: list[Message]) -> list[Message]:
        """One batched pass over every message (and its context) of the call."""
        if self._model is None or not messages:
            return messages
        windows = []
        for m in messages:
            context = (m.get("metadata") or {}).get(CONTEXT_KEY) or ()
            windows.append(window_text(m.get(TEXT) or "", tuple(context)[-MAX_CONTEXT:]))
        for m, verdict in zip(messages, self._model.predict(windows), strict=True):
            m.set(OUTPUT_KEY, verdict.as_dict(), add_to_output=True)
        return messages


__all__ = ["SeverityClassifier"]
