"""BatchedDIETClassifier (for DIET pipelines) gives one-at-a-time results in one call.

A small DIET with one transformer layer — so padding inside a batch really matters — is
trained on the project data; every project text is then parsed both ways in the NLU runtime.
On the n-gram featurizers. With the sentence-only token vectors, batched DIET scores moved
by ~2e-4 and flipped near-ties on 148 project texts (a DIET trained on the whole pipeline
with the vectors), so the classifier keeps Rasa's loop there; the second test checks that.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from bot.core.settings import Settings
from nlu.fingerprint import model_fingerprint, rasa_config
from nlu.training import COMPONENT_CODE, nlu_env, train_nlu

pytestmark = pytest.mark.nlu

COMPARE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from nlu.datasets import load_rasa_nlu
    from nlu.runtime.model import NLUModel

    model = NLUModel.load(Path(sys.argv[1]))
    texts = sorted({e.text for d in sys.argv[2:] for e in load_rasa_nlu(Path(d))})
    one = [model.parse(t) for t in texts]
    many = [r for i in range(0, len(texts), 64) for r in model.parse_many(texts[i:i + 64])]
    worst, mismatches = 0.0, []
    for t, a, b in zip(texts, one, many):
        if a["intent"]["name"] != b["intent"]["name"]:
            mismatches.append(t)
        ra = {x["name"]: x["confidence"] for x in a["intent_ranking"]}
        rb = {x["name"]: x["confidence"] for x in b["intent_ranking"]}
        for k in ra:
            worst = max(worst, abs(ra[k] - rb.get(k, -1.0)))
    print(json.dumps({"n": len(texts), "mismatches": mismatches, "worst": worst}))
    """
)


def test_batched_diet_matches_one_by_one(settings: Settings) -> None:
    config = rasa_config(settings.config_path)
    # the n-gram featurizers: the token vectors give sentence-only features, for which the
    # classifier keeps Rasa's loop (test below)
    featurizers = [
        c
        for c in config["pipeline"]
        if "Classifier" not in c["name"] and "StaticEmbedding" not in c["name"]
    ]
    config["pipeline"] = [
        # DIET reads per-token features, which our pipeline switches off
        *(
            {**c, "sequence_features": True} if "CountVectors" in c["name"] else c
            for c in featurizers
        ),
        {
            "name": "nlu.runtime.batched_diet.BatchedDIETClassifier",
            "epochs": 3,
            "number_of_transformer_layers": 1,
            "transformer_size": 64,
            "hidden_layers_sizes": {"text": [64]},
            "entity_recognition": False,
            "random_seed": 7,
        },
    ]
    data = settings.path(settings.nlu.data)
    code = [settings.root / p for p in COMPONENT_CODE]
    fp = model_fingerprint(config, [data], code, root=settings.root)
    model = settings.path(settings.nlu.models) / "test" / f"batched-diet-{fp}.tar.gz"
    if not model.is_file():
        train_nlu(settings, config=config, nlu_data=[data], out=model, quiet=True)
    out = subprocess.run(
        [str(settings.nlu_python), "-c", COMPARE, str(model), str(data),
         str(settings.path(settings.nlu.heldout))],
        cwd=settings.root, env=nlu_env(settings), capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] > 1500
    assert result["mismatches"] == []
    assert result["worst"] < 1e-4


GUARD = textwrap.dedent(
    """
    import json
    import numpy as np
    import scipy.sparse
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.features import Features
    from rasa.shared.nlu.training_data.message import Message

    from nlu.runtime.batched_diet import _sentence_only_features

    def message(vectors):
        m = Message({TEXT: "hi"})
        counts = scipy.sparse.coo_matrix(np.ones((2, 5)))
        m.add_features(Features(counts, "sequence", TEXT, "ngrams"))
        m.add_features(Features(counts.tocsr()[:1].tocoo(), "sentence", TEXT, "ngrams"))
        if vectors:
            m.add_features(Features(np.ones((1, 4)), "sentence", TEXT, "vectors"))
        return m

    print(json.dumps([_sentence_only_features(message(v)) for v in (False, True)]))
    """
)


def test_sentence_only_features_keep_rasas_loop(settings: Settings) -> None:
    out = subprocess.run(
        [str(settings.nlu_python), "-c", GUARD],
        cwd=settings.root, env=nlu_env(settings), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True]
