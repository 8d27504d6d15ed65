"""The pretrained token vectors: the right table with the right tokenizer, batch-independent
rows, stored in the model, and a clear error when they were never fetched."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from bot.settings import Settings
from nlu.training import nlu_env

pytestmark = pytest.mark.nlu

SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path

    import numpy as np
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.exceptions import InvalidConfigException
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from nlu.runtime.components.embeddings import StaticEmbeddingFeaturizer

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalModelStorage(Path(tmp))
        resource = Resource("vectors")
        f = StaticEmbeddingFeaturizer.create({}, storage, resource, None)
        f.train(TrainingData())
        texts = [
            "my phone battery is swelling",
            "the battery of my phone is bulging",
            "how do I get a refund",
            "I want my money back",
            "what time do you open",
            "",
            "😂😂",
        ]

        def vectors(featurizer, batch):
            msgs = [Message({TEXT: t}) for t in batch]
            featurizer.process(msgs)
            rows = []
            for m in msgs:
                feats = [x for x in m.features if x.attribute == TEXT]
                rows.append(feats[0].features.reshape(-1) if feats else None)
            return rows

        together = vectors(f, texts)
        alone = [vectors(f, [t])[0] for t in texts]
        out["batch_same"] = all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in zip(together, alone)
        )
        out["empty_has_feature"] = together[5] is not None
        v = {t: r for t, r in zip(texts, together) if r is not None}
        out["norms"] = sorted({round(float(np.linalg.norm(r)), 4) for r in v.values()})
        out["dim"] = int(together[0].shape[0])
        cos = lambda a, b: float(v[a] @ v[b])
        out["paraphrase"] = [cos(texts[0], texts[1]), cos(texts[2], texts[3])]
        out["unrelated"] = [cos(texts[0], texts[2]), cos(texts[0], texts[4]),
                            cos(texts[1], texts[3]), cos(texts[3], texts[4])]

        # the model carries the vectors: loading never reads the configured path
        loaded = StaticEmbeddingFeaturizer.load(
            {"path": str(Path(tmp) / "nowhere")}, storage, resource, None
        )
        out["loaded_same"] = all(
            np.array_equal(a, b) for a, b in zip(vectors(loaded, texts[:5]), together[:5])
        )

        # messages detected as Vietnamese get a zero vector when Vietnamese is skipped
        vi_skipped = StaticEmbeddingFeaturizer.load(
            {"skip_languages": ["vi"]}, storage, resource, None
        )
        mixed = ["pin điện thoại bị phồng", "pin dt bi phong roi", "my battery is swelling"]
        out["skip_norms"] = [round(float(np.linalg.norm(r)), 4) for r in vectors(vi_skipped, mixed)]
        try:
            StaticEmbeddingFeaturizer.create({"skip_languages": "vi"}, storage, resource, None)
            out["bad_skip_error"] = None
        except InvalidConfigException as e:
            out["bad_skip_error"] = str(e)

        # never fetched: training says what is missing and how to get it
        missing = StaticEmbeddingFeaturizer.create(
            {"path": str(Path(tmp) / "nowhere")}, storage, Resource("missing"), None
        )
        try:
            missing.train(TrainingData())
            out["missing_error"] = None
        except InvalidConfigException as e:
            out["missing_error"] = str(e)
    print(json.dumps(out))
    """
)


def test_token_vectors(settings: Settings) -> None:
    out = subprocess.run(
        [str(settings.nlu_python), "-c", SCRIPT],
        cwd=settings.root, env=nlu_env(settings), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dim"] == 256
    assert result["batch_same"] is True
    assert result["empty_has_feature"] is False  # no text, no feature (the classifier zeros it)
    assert result["norms"] == [1.0]  # every row unit length
    # a table read with the wrong tokenizer (or the wrong rows) puts paraphrases no nearer
    # than unrelated questions
    assert min(result["paraphrase"]) > max(result["unrelated"]) + 0.1, result
    assert result["loaded_same"] is True
    assert result["skip_norms"] == [0.0, 0.0, 1.0]
    assert "skip_languages" in result["bad_skip_error"]
    assert result["missing_error"] and "nowhere" in result["missing_error"]
    assert "make nlu-env" in result["missing_error"]

    # the licence travels with the vectors (scripts/fetch-embeddings.sh copies it)
    fetched = settings.root / "var" / "embeddings" / "wordllama-l2-supercat-256"
    assert (fetched / "LICENSE").read_text().startswith("MIT License")
