"""A learned severity and queue classifier for customer messages.

Why beside the hazard lexicon: customers describe a hazard by what they see, hear and smell
("the back glass is pushed up", "hissing and a sweet smell") far more often than by a hazard
word, and no hand-written list can enumerate that. A linear model over hashed word and
character n-grams, trained on thousands of messages from several independent writers, reads
those symptoms; the gateway's triage combines its scores with the lexicon's explicit hazards.

Features (one sparse row per message; `window` joins the last few customer messages, so a
hazard told over two messages is read as one):
  * folded words and word bigrams ("may bi no" meets "máy bị nổ"), after chat abbreviations
    are expanded (nlu/vi/normalize.py);
  * words with their diacritics, where typed ("nổ" is not "nó");
  * folded character 2-5 grams inside word boundaries (typos, teencode, word forms).
Hashed (no vocabulary to store), sublinear tf-idf, unit length; one multinomial logistic
regression for severity, one for the queue. The fitted state is plain arrays (no pickle).

NLU runtime only (numpy, scikit-learn), but no rasa import: the Rasa component in
components/severity.py wraps it, and the evaluation folds call it directly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.sparse

from nlu.vi.normalize import Lexicon, normalized_words
from nlu.vi.text import fold, has_diacritics

SEVERITIES = ("critical", "high", "normal", "low")
QUEUES = ("safety", "technical", "billing", "orders", "general")
N_FEATURES = 1 << 18
WINDOW_SEPARATOR = " \n "
CONTEXT_KEY = "careline_context"  # message metadata: earlier customer messages, oldest first
OUTPUT_KEY = "careline_triage"  # parse output key; the NLU service moves it under `careline`
MAX_CONTEXT = 4  # earlier messages read with the current one


def window_text(text: str, context: Sequence[str] = ()) -> str:
    """The text the model reads: earlier customer messages, oldest first, then this one."""
    return WINDOW_SEPARATOR.join([*context, text])


def _char_grams(word: str) -> list[str]:
    padded = f" {word} "
    return [
        "c:" + padded[i : i + n] for n in range(2, 6) for i in range(max(1, len(padded) - n + 1))
    ]


@lru_cache(maxsize=1 << 17)
def _id(term: str) -> int:
    from sklearn.utils import murmurhash3_32

    return int(murmurhash3_32(term, positive=True)) % N_FEATURES


@lru_cache(maxsize=1 << 16)
def _word_ids(folded_word: str) -> np.ndarray:
    """Hashed ids of a word's own terms and char n-grams: chat reuses a small vocabulary, so
    each word is hashed once per process, not once per message."""
    return np.array([_id("w:" + folded_word), *map(_id, _char_grams(folded_word))], np.int64)


def _term_ids(text: str, lexicon: Lexicon) -> np.ndarray:
    words = [w.norm for w in normalized_words(text, lexicon)]
    folded = [fold(w) for w in words]
    parts = [_word_ids(w) for w in folded]
    extra = ["b:" + a + "_" + b for a, b in itertools.pairwise(folded)]
    extra += ["d:" + w for w in words if has_diacritics(w)]
    parts.append(np.fromiter(map(_id, extra), np.int64, len(extra)))
    return np.concatenate(parts)


def term_counts(texts: Iterable[str], lexicon: Lexicon) -> scipy.sparse.csr_matrix:
    """Hashed term counts, one row per text."""
    indptr = [0]
    cols: list[np.ndarray] = []
    for t in texts:
        idx = np.unique(_term_ids(t, lexicon), return_counts=True)
        cols.append(np.vstack(idx))
        indptr.append(indptr[-1] + idx[0].size)
    if cols:
        stacked = np.hstack(cols)
        indices, data = stacked[0], stacked[1].astype(np.float64)
    else:
        indices, data = np.zeros(0, dtype=np.int64), np.zeros(0)
    return scipy.sparse.csr_matrix(
        (data, indices, np.array(indptr)), shape=(len(indptr) - 1, N_FEATURES)
    )


def _tfidf(counts: scipy.sparse.csr_matrix, idf: np.ndarray) -> scipy.sparse.csr_matrix:
    x = counts.copy()
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    x.data *= np.repeat(1.0 / norms, np.diff(x.indptr))  # each row to unit length
    return x


@dataclass(frozen=True)
class Example:
    text: str  # the window: see window_text
    severity: str
    queue: str


@dataclass
class Head:
    """One fitted softmax layer over the shared features."""

    labels: tuple[str, ...]
    coef: np.ndarray  # (n_features, n_labels), float32: what is stored
    intercept: np.ndarray  # (n_labels,)
    # What scoring multiplies by: the features are float64, and scipy would otherwise
    # upcast all 2**18 rows of `coef` on every call (~1.5 ms per head per batch).
    _scoring: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._scoring = np.ascontiguousarray(self.coef, dtype=np.float64)

    def probabilities(self, x: scipy.sparse.csr_matrix) -> np.ndarray:
        z = np.asarray(x @ self._scoring) + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def _fit_head(
    x: scipy.sparse.csr_matrix, y: Sequence[str], labels: Sequence[str], c: float, seed: int
) -> Head:
    from sklearn.linear_model import LogisticRegression

    present = [lab for lab in labels if lab in set(y)]
    # fit on the columns that occur (a few 10 000 of the hashed 2**18): lbfgs is much faster
    used = np.unique(x.indices)
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced", random_state=seed)
    clf.fit(x[:, used], [present.index(v) for v in y])
    coef = np.zeros((x.shape[1], len(labels)), dtype=np.float32)
    intercept = np.full(len(labels), -30.0)  # a label never seen in training: never predicted
    cw, ci = clf.coef_, clf.intercept_
    if len(present) == 2:  # sklearn keeps one column for two classes
        cw, ci = np.vstack([-cw / 2, cw / 2]), np.array([-ci[0] / 2, ci[0] / 2])
    for j, lab in enumerate(present):
        coef[used, labels.index(lab)] = cw[j]
        intercept[labels.index(lab)] = ci[j]
    return Head(tuple(labels), coef, intercept)


@dataclass
class SeverityModel:
    lexicon: Lexicon
    idf: np.ndarray
    severity: Head
    queue: Head

    @classmethod
    def fit(
        cls, examples: Sequence[Example], lexicon: Lexicon, *, c: float = 8.0, seed: int = 42
    ) -> SeverityModel:
        counts = term_counts((e.text for e in examples), lexicon)
        df = np.bincount(counts.indices, minlength=N_FEATURES)
        idf = (np.log((1 + counts.shape[0]) / (1 + df)) + 1.0).astype(np.float32)
        x = _tfidf(counts, idf)
        severity = _fit_head(x, [e.severity for e in examples], SEVERITIES, c, seed)
        # the queue of a critical message is always safety: the queue head learns the rest
        rest = [i for i, e in enumerate(examples) if e.severity != "critical"]
        queue = _fit_head(x[rest], [examples[i].queue for i in rest], QUEUES, c, seed)
        return cls(lexicon, idf, severity, queue)

    def predict(self, texts: Sequence[str]) -> list[Verdict]:
        """Scores for each text (a window), in one pass for the batch."""
        if not texts:
            return []
        x = _tfidf(term_counts(texts, self.lexicon), self.idf)
        sev = self.severity.probabilities(x)
        que = self.queue.probabilities(x)
        return [Verdict.of(s, q) for s, q in zip(sev, que, strict=True)]

    # -- storage: plain arrays and JSON ----------------------------------------------------

    ARRAYS = "severity_model.npz"
    META = "severity_model.json"

    def save(self, directory: Path) -> None:
        meta = {"lexicon": self.lexicon.to_dict(), "n_features": N_FEATURES}
        (directory / self.META).write_text(json.dumps(meta, ensure_ascii=False))
        np.savez_compressed(
            directory / self.ARRAYS,
            idf=self.idf,
            severity_coef=self.severity.coef,
            severity_intercept=self.severity.intercept,
            queue_coef=self.queue.coef,
            queue_intercept=self.queue.intercept,
        )

    @classmethod
    def load(cls, directory: Path) -> SeverityModel:
        meta = json.loads((directory / cls.META).read_text(encoding="utf-8"))
        if meta.get("n_features") != N_FEATURES:
            raise ValueError(f"severity model has {meta.get('n_features')} features; retrain")
        with np.load(directory / cls.ARRAYS, allow_pickle=False) as a:
            return cls(
                Lexicon.from_dict(meta["lexicon"]),
                a["idf"],
                Head(SEVERITIES, a["severity_coef"], a["severity_intercept"]),
                Head(QUEUES, a["queue_coef"], a["queue_intercept"]),
            )


@dataclass(frozen=True)
class Verdict:
    severity: str
    queue: str
    severity_scores: dict[str, float]
    queue_scores: dict[str, float]

    @classmethod
    def of(cls, sev: np.ndarray, que: np.ndarray) -> Verdict:
        s = {lab: round(float(p), 4) for lab, p in zip(SEVERITIES, sev, strict=True)}
        q = {lab: round(float(p), 4) for lab, p in zip(QUEUES, que, strict=True)}
        severity = SEVERITIES[int(np.argmax(sev))]
        queue = "safety" if severity == "critical" else QUEUES[int(np.argmax(que))]
        return cls(severity, queue, s, q)

    def as_dict(self) -> dict[str, object]:
        """The shape /model/parse carries under `careline`."""
        return {
            "severity": self.severity,
            "queue": self.queue,
            "scores": {"severity": self.severity_scores, "queue": self.queue_scores},
        }


# -- the corpus ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    text: str
    history: tuple[str, ...]
    severity: str
    queue: str
    style: str
    writer: str
    kind: str | None

    @property
    def window(self) -> str:
        return window_text(self.text, self.history)

    def example(self) -> Example:
        return Example(self.window, self.severity, self.queue)


class CorpusError(ValueError):
    """A malformed corpus line; the message names the file and line."""


def read_corpus(paths: Iterable[Path]) -> list[Row]:
    """Every row of the JSONL files under `paths` (files or folders), checked."""
    rows: list[Row] = []
    files: list[Path] = []
    for p in paths:
        files += sorted(p.rglob("*.jsonl")) if p.is_dir() else [p]
    for f in files:
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{f}:{lineno}"
            try:
                o = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{where}: not JSON ({e.msg})") from None
            if not isinstance(o, dict) or not isinstance(o.get("text"), str):
                raise CorpusError(f'{where}: needs an object with a string "text"')
            if o.get("severity") not in SEVERITIES or o.get("queue") not in QUEUES:
                raise CorpusError(
                    f"{where}: bad severity/queue {o.get('severity')}/{o.get('queue')}"
                )
            if o["severity"] == "critical" and o["queue"] != "safety":
                raise CorpusError(f"{where}: a critical row belongs to the safety queue")
            history = o.get("history") or []
            if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
                raise CorpusError(f'{where}: "history" must be a list of strings')
            rows.append(
                Row(
                    o["text"],
                    tuple(history),
                    o["severity"],
                    o["queue"],
                    str(o.get("style") or ""),
                    str(o.get("writer") or f.stem),
                    o.get("kind"),
                )
            )
    return rows


__all__ = [
    "QUEUES",
    "SEVERITIES",
    "CorpusError",
    "Example",
    "Row",
    "SeverityModel",
    "Verdict",
    "read_corpus",
    "window_text",
]
