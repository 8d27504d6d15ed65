"""The pretrained token vectors: the right table with the right tokenizer, batch-independent
rows, stored in the model, and a clear error when they were never fetched."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from bot.core.settings import Settings
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


def _run(settings: Settings, script: str) -> dict:
    """Run `script` in the NLU runtime; its last line of output is JSON."""
    out = subprocess.run(
        [str(settings.nlu_python), "-c", script],
        cwd=settings.root, env=nlu_env(settings), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_token_vectors(settings: Settings) -> None:
    result = _run(settings, SCRIPT)
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


FIT_SCRIPT = textwrap.dedent(
    """
    import json, tempfile
    from pathlib import Path

    import numpy as np
    import scipy.sparse
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource
    from rasa.shared.nlu.constants import INTENT, TEXT
    from rasa.shared.nlu.training_data.features import Features
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from nlu.runtime.components.linear import LinearIntentClassifier, _softmax

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8))

    def draw(label):
        counts = scipy.sparse.coo_matrix(rng.poisson(0.3, size=(1, 40)).astype(float))
        dense = (centres[label] + rng.normal(scale=0.8, size=8)).reshape(1, -1)
        return counts, dense.astype(np.float32)

    def message(i, label, features=None):
        counts, dense = features or draw(label)
        m = Message({TEXT: f"text {i}"})
        m.add_features(Features(counts, "sentence", TEXT, "counts"))
        m.add_features(Features(dense, "sentence", TEXT, "vectors"))
        return m, label

    data = [message(i, i % 3) for i in range(90)]
    for m, label in data:
        m.set(INTENT, f"intent{label}")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalModelStorage(Path(tmp))
        clf = LinearIntentClassifier.create({"dense_weight": 0.5}, storage, Resource("c"), None)
        clf.train(TrainingData([m for m, _ in data]))
        st = clf._state
        held = [draw(i % 3) for i in range(30)]
        test = [message(1000 + i, i % 3, f)[0] for i, f in enumerate(held)]
        # what the SVM was fitted on, for these messages: the training-time design
        counts, dense = clf._features(test, st["width"], st["dense_width"])
        design = clf._design(counts, dense, st["idf"])
        scores = design @ st["coef"].T.astype(np.float64) + st["intercept"]
        expected = _softmax(np.asarray(scores), st["temperature"])
        loaded = LinearIntentClassifier.load({"dense_weight": 0.5}, storage, Resource("c"), None)
        loaded.process(test)
        got = [{r["name"]: r["confidence"] for r in m.get("intent_ranking")} for m in test]
        labels = st["labels"]
        out["worst"] = max(
            abs(g[labels[j]] - expected[i, j]) for i, g in enumerate(got) for j in range(3)
        )
        out["dense_width"] = int(st["dense_width"])
        # the same messages under another weight score differently: the check above would
        # see a weight that prediction forgot or applied twice
        other = LinearIntentClassifier.load({"dense_weight": 1.0}, storage, Resource("c"), None)
        again = [message(1000 + i, i % 3, f)[0] for i, f in enumerate(held)]
        other.process(again)
        out["weight_moves"] = max(
            abs(a.get("intent")["confidence"] - b.get("intent")["confidence"])
            for a, b in zip(again, test)
        )
    print(json.dumps(out))
    """
)


def test_prediction_matches_the_fitted_design(settings: Settings) -> None:
    """`process` (split coefficients, dense product apart) scores what training fitted:
    the unit-length tf-idf row with the weighted dense block appended."""
    result = _run(settings, FIT_SCRIPT)
    assert result["dense_width"] == 8
    assert result["worst"] < 1e-9, result
    assert result["weight_moves"] > 1e-3, result
