"""The `create` half of Rasa's GraphComponent API for components that keep state in the model.

Our trainable components (tokenizer, featurizer, classifier) all start untrained and get
their state from `train` or from the model (`load`); only `load` differs between them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage

_C = TypeVar("_C", bound="CreatedUntrained")


class CreatedUntrained:
    """`create` gives an untrained instance: `cls(config, model_storage, resource)`."""

    @classmethod
    def create(
        cls: type[_C],
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> _C:
        """An untrained component: `train` (or `load`) gives it its state."""
        return cls(config, model_storage, resource)  # type: ignore[call-arg]


__all__ = ["CreatedUntrained"]
