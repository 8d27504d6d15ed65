"""Choosing the fallback threshold on validation data (nlu/threshold.py), and the
stratified folds of nlu/datasets.py. Pure Python."""

from __future__ import annotations

import pytest

from nlu.datasets import Example, stratified_folds
from nlu.threshold import MIN_TO_VALIDATE, Scored, choose, folds, split_folds

OOS = "out_of_scope"


def test_threshold_separates_confident_answers_from_out_of_scope() -> None:
    scored = [
        *(Scored(False, True, c) for c in (0.9, 0.8, 0.7, 0.6)),  # right and sure
        *(Scored(True, False, c) for c in (0.2, 0.25, 0.3)),  # out of scope, unsure
    ]
    choice = choose(scored)
    assert 0.3 < choice.threshold <= 0.6
    assert choice.in_scope_accuracy == 1.0 and choice.oos_recall == 1.0


def test_in_scope_budget_caps_what_the_fallback_may_cost() -> None:
    # confidences overlap: rejecting all out-of-scope messages would drop half the answers
    scored = [
        *(Scored(False, True, c) for c in (0.95, 0.9, 0.5, 0.45)),
        *(Scored(True, False, c) for c in (0.55, 0.52, 0.4, 0.3)),
    ]
    free = choose(scored, max_in_scope_loss=1.0)
    capped = choose(scored, max_in_scope_loss=0.0)
    assert free.threshold > 0.5  # unconstrained: trade answers for rejections
    assert capped.in_scope_accuracy == 1.0 and capped.threshold <= 0.45


def test_without_out_of_scope_examples_accuracy_decides() -> None:
    scored = [Scored(False, True, 0.9), Scored(False, True, 0.2), Scored(False, False, 0.1)]
    choice = choose(scored)
    assert choice.oos_recall is None
    assert choice.in_scope_accuracy == pytest.approx(2 / 3, abs=1e-3)
    assert choice.threshold <= 0.2


def test_a_model_that_predicts_the_oos_class_itself_needs_no_threshold() -> None:
    scored = [Scored(False, True, 0.9), Scored(True, True, 0.9)]  # CLINC150's oos class
    assert choose(scored).objective == 1.0


def test_choose_refuses_empty_validation() -> None:
    with pytest.raises(ValueError, match="no validation examples"):
        choose([])


def _train() -> list[Example]:
    return [Example(f"{i} {j}", f"intent{i}") for i in range(8) for j in range(10)] + [
        Example(f"oos {j}", OOS) for j in range(5)
    ]


def test_folds_hold_out_whole_intents_as_pseudo_out_of_scope() -> None:
    train = _train()
    made = folds(train, OOS, n_folds=4, pseudo_oos=True)
    assert len(made) == 4
    held_per_fold = []
    for f in made:
        train_texts = {e.text for e in f.train}
        assert not train_texts & {e.text for e in f.val}  # validation never trained on
        pseudo = {e.text.split()[0] for e in f.val if e.intent == OOS}
        assert pseudo and not any(e.intent == f"intent{p}" for p in pseudo for e in f.train)
        assert all(e.text in train_texts for e in train if e.intent == OOS)  # real oos: train
        held_per_fold.append(pseudo)
    # every intent is held out exactly once across the folds
    assert sorted(p for h in held_per_fold for p in h) == [str(i) for i in range(8)]


def test_folds_without_pseudo_oos_only_hold_out_a_share_of_each_intent() -> None:
    (f,) = folds(_train(), OOS, n_folds=1, pseudo_oos=False, val_share=0.2)
    assert {e.intent for e in f.val} == {f"intent{i}" for i in range(8)}
    assert len(f.val) == 8 * 2 and len(f.train) == 8 * 8 + 5


def test_folds_are_deterministic() -> None:
    a = folds(_train(), OOS, n_folds=3, pseudo_oos=True)
    b = folds(_train(), OOS, n_folds=3, pseudo_oos=True)
    assert [[e.text for e in f.val] for f in a] == [[e.text for e in f.val] for f in b]


def test_split_folds_score_in_scope_examples_with_every_intent_known() -> None:
    train = _train() + [Example(f"rare {j}", "rare") for j in range(MIN_TO_VALIDATE - 1)]
    made = split_folds(train, OOS, n_oos_folds=4, n_in_folds=5)
    assert len(made) == 4 + 5
    oos_folds, in_folds = made[:4], made[4:]
    # the first four hold out whole intents and validate only on them, as out-of-scope
    held = []
    for f in oos_folds:
        assert f.val and all(e.intent == OOS for e in f.val)
        names = {e.text.split()[0] for e in f.val}
        assert not any(e.text.split()[0] in names for e in f.train if e.intent != OOS)
        held += names
    assert sorted(held) == sorted([str(i) for i in range(8)] + ["rare"])
    # the other five keep every intent in training and score each in-scope example once
    intents = {e.intent for e in train}
    validated = [e for f in in_folds for e in f.val]
    for f in in_folds:
        assert {e.intent for e in f.train} == intents
        assert not {e.text for e in f.train} & {e.text for e in f.val}
    assert sorted(e.text for e in validated) == sorted(
        e.text for e in train if e.intent.startswith("intent")
    )  # neither real out-of-scope examples nor a too-small intent is validated on


def test_crossval_folds_are_stratified_disjoint_and_complete() -> None:
    data = [Example(f"{i}-{j}", f"intent{i}") for i in range(3) for j in range(10)]
    made = stratified_folds(data, 5)
    assert sorted(e.text for f in made for e in f) == sorted(e.text for e in data)
    for f in made:  # every intent in every fold, in proportion
        assert sorted(e.intent for e in f) == sorted(["intent0", "intent1", "intent2"] * 2)
