"""The serving shortcuts give Rasa's own results, on the project model and all project texts.

Our service skips three pieces of Rasa machinery for speed: the dask graph runner (NLUPlan),
the per-message featurizer loop (one sklearn transform per batch, and no per-token features
when nothing reads them), and scipy's checked COO constructor (`_rows`). Each is compared
here with what Rasa itself computes, inside the NLU runtime.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from bot.core.settings import Settings
from nlu.training import nlu_env

pytestmark = pytest.mark.nlu

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np
    import scipy.sparse
    from rasa.core.channels.channel import UserMessage
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import (
        CountVectorsFeaturizer,
    )
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message

    from nlu.datasets import load_rasa_nlu
    from nlu.runtime.components.vietnamese import FoldedCountVectorsFeaturizer, _rows
    from nlu.runtime.model import NLUModel

    model = NLUModel.load(Path(sys.argv[1]))
    texts = sorted({e.text for d in sys.argv[2:] for e in load_rasa_nlu(Path(d))})
    out = {"n": len(texts)}

    # 1. parse_many (NLUPlan, batches of 64) against Rasa's own parse_message (dask runner)
    processor = model.agent.processor
    ours = [r for i in range(0, len(texts), 64) for r in model.parse_many(texts[i:i + 64])]
    worst, differ, keys = 0.0, [], set()
    for t, a in zip(texts, ours):
        b = processor._parse_message_with_graph(UserMessage(t), None, True)
        b = {"text": "", "intent": {"name": None, "confidence": 0.0}, "entities": [], **b}
        keys |= set(a) ^ set(b)
        if a["intent"]["name"] != b["intent"]["name"]:
            differ.append(t)
        for x, y in zip(a["intent_ranking"], b["intent_ranking"]):
            differ += [t] if x["name"] != y["name"] else []
            worst = max(worst, abs(x["confidence"] - y["confidence"]))
    out.update(plan_differ=differ[:5], plan_worst=worst, plan_keys=sorted(keys))

    # 2. our batched featurizers against Rasa's per-message CountVectorsFeaturizer.process,
    #    with per-token features on (all must match) and off (sentence features must match)
    nodes = processor.graph_runner._instantiated_nodes
    tokenizer = next(n._component for n in nodes.values()
                     if type(n._component).__name__ == "VietnameseTokenizer")
    featurizers = [n._component for n in nodes.values()
                   if isinstance(n._component, FoldedCountVectorsFeaturizer)]

    def tokenized():
        return tokenizer.process([Message(data={TEXT: t}) for t in texts])

    def feats(m, origin):
        return {f.type: f.features for f in m.features if f.origin == origin}

    bad = []
    for featurizer in featurizers:
        for sequences in (True, False):
            featurizer._config["sequence_features"] = sequences
            batched = featurizer.process(tokenized())
            single = tokenized()
            for m in single:
                CountVectorsFeaturizer.process(featurizer, [m])
            for t, a, b in zip(texts, batched, single):
                fa, fb = feats(a, featurizer._identifier), feats(b, featurizer._identifier)
                if not sequences:
                    fb.pop("sequence", None)
                if fa.keys() != fb.keys() or any(
                    (fa[k] != fb[k]).nnz or fa[k].shape != fb[k].shape
                    or fa[k].col.dtype != fb[k].col.dtype for k in fa
                ):
                    bad.append([featurizer._identifier, sequences, t])
    out["featurizer_mismatches"] = bad[:5]
    out["featurizers"] = len(featurizers)

    # 3. our remembered per-token processing against Rasa's regex on every call
    tokens = [t.text for m in tokenized() for t in m.get("text_tokens")]
    tokens += ["12", "a1", "10k", "iphone 15", "2tr5", "Pin", "ĐƯỢC"]
    out["token_mismatches"] = [
        t for f in featurizers for t in tokens
        if f._process_tokens([t]) != CountVectorsFeaturizer._process_tokens(f, [t])
    ][:5]
    out["tokens"] = len(tokens)

    # 4. _rows against scipy's own slicing
    rng = np.random.default_rng(7)
    m = scipy.sparse.random(40, 5000, density=0.01, format="csr", random_state=7)
    m.sort_indices()
    rows_bad = 0
    for a in range(40):
        b = int(rng.integers(a + 1, 41))
        x, y = _rows(m, a, b), m[a:b].tocoo()
        same = (x.shape == y.shape and x.row.dtype == y.row.dtype
                and np.array_equal(x.row, y.row) and np.array_equal(x.col, y.col)
                and np.array_equal(x.data, y.data))
        rows_bad += not same
    out["rows_bad"] = rows_bad
    print(json.dumps(out))
    """
)


def test_serving_shortcuts_match_rasa(settings: Settings, nlu_model: Path) -> None:
    out = subprocess.run(
        [str(settings.nlu_python), "-c", SCRIPT, str(nlu_model),
         str(settings.path(settings.nlu.data)), str(settings.path(settings.nlu.heldout))],
        cwd=settings.root, env=nlu_env(settings), capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] > 1500
    assert result["plan_differ"] == []
    assert result["plan_keys"] == []
    assert result["plan_worst"] < 1e-9
    assert result["featurizers"] == 2
    assert result["featurizer_mismatches"] == []
    assert result["tokens"] > 10000 and result["token_mismatches"] == []
    assert result["rows_bad"] == 0
