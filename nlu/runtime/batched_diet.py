"""DIETClassifier that predicts a whole list of messages in one TensorFlow call.

Rasa 3.6's `DIETClassifier.process()` loops over messages and runs inference with a batch of
one, so a service parsing 64 concurrent requests pays 64 model calls. This subclass builds
the model data for all messages at once and runs a single batched inference; per-message
post-processing (ranking, renormalisation) is Rasa's own `_predict_label`, so results match
one-at-a-time parsing (a test checks this on the whole project data).

Intent classification only: with entity recognition on, it defers to Rasa's loop (entity
decoding needs per-message token alignment we do not use). It also defers when a featurizer
gives sentence features without sequence features (StaticEmbeddingFeaturizer): DIET's
batched scores then differ from one-at-a-time ones by up to ~2e-4, enough to flip near-ties
(seen on the project data), so such pipelines keep Rasa's loop.
"""

from __future__ import annotations

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.shared.nlu.constants import FEATURE_TYPE_SEQUENCE, INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.utils.tensorflow.constants import ENTITY_RECOGNITION, INTENT_CLASSIFICATION


@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER,
        DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR,
    ],
    is_trainable=True,
)
class BatchedDIETClassifier(DIETClassifier):
    def process(self, messages: list[Message]) -> list[Message]:
        if (
            len(messages) <= 1
            or self.model is None
            or self.component_config[ENTITY_RECOGNITION]
            or not self.component_config[INTENT_CLASSIFICATION]
            or self._execution_context.should_add_diagnostic_data
            or _sentence_only_features(messages[0])
        ):
            return super().process(messages)
        model_data = self._create_model_data(messages, training=False)
        if model_data.is_empty() or model_data.number_of_examples() != len(messages):
            return super().process(messages)  # some message had no features at all
        out = self.model.run_inference(model_data, batch_size=len(messages))
        scores = out["i_scores"]
        for i, message in enumerate(messages):
            label, ranking = self._predict_label({"i_scores": scores[i : i + 1]})
            message.set(INTENT, label, add_to_output=True)
            message.set("intent_ranking", ranking, add_to_output=True)
        return messages


def _sentence_only_features(message: Message) -> bool:
    """Does some featurizer give this message sentence features but no sequence features?"""
    kinds: dict[str, set[str]] = {}
    for f in message.features:
        if f.attribute == TEXT:
            kinds.setdefault(f.origin, set()).add(f.type)
    return any(FEATURE_TYPE_SEQUENCE not in k for k in kinds.values())
