"""Training: runs `rasa train nlu` inside the NLU runtime (.venv-nlu) and stores the model
under its fingerprint.

Gateway side: never imports rasa. Training is a subprocess so the two runtimes stay apart,
and so a crash or Ctrl-C mid-training can never leave a half-written model where the
service would load it (we train into a temporary folder and rename atomically).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.core.settings import Settings
from nlu.fingerprint import model_fingerprint, model_name, rasa_config

# Code whose behaviour is baked into a trained model (custom graph components and the text
# normalisation they call). Part of the fingerprint so editing it retrains.
COMPONENT_CODE = (
    "nlu/runtime/components",
    "nlu/runtime/batched_diet.py",
    "nlu/runtime/severity_model.py",
    "nlu/vi",
)
LEXICON_DATA = "data/lexicon"
# Names the exact vectors (wheel and SHA-256) that scripts/fetch-embeddings.sh installed:
# part of the fingerprint so other vectors retrain.
EMBEDDINGS_SOURCE = "var/embeddings/wordllama-l2-supercat-256/SOURCE"
# The triage corpus the severity component learns from (its blind split is not here).
TRIAGE_CORPUS = ("data/triage/corpus/train", "data/triage/labelled.jsonl")
# data besides data/nlu that a model bakes in
MODEL_DATA = (LEXICON_DATA, EMBEDDINGS_SOURCE, *TRIAGE_CORPUS)


class TrainingError(RuntimeError):
    """`rasa train nlu` failed; the message carries the tail of its output."""


@dataclass(frozen=True)
class ProjectModel:
    fingerprint: str
    path: Path

    @property
    def exists(self) -> bool:
        return self.path.is_file()


def nlu_env(settings: Settings) -> dict[str, str]:
    """Environment for processes in the NLU runtime: our code importable, TF kept quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.root), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Rasa 3.6's pinned dependencies warn about their own deprecations on every start;
    # that noise hides the lines a person needs to read.
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning,ignore::FutureWarning")
    env.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Rasa phones home for telemetry by default; there is no network here and no consent.
    env["RASA_TELEMETRY_ENABLED"] = "false"
    # Rasa's per-node training cache (.rasa/cache): we cache whole models by fingerprint, so
    # it never saved us a training, and its LRU eviction is not safe between concurrent
    # trainings (one process deleted a directory the other was evicting: FileNotFoundError).
    # With the token vectors every training adds ~18 MB, so its 1 GB filled within a session.
    env.setdefault("RASA_MAX_CACHE_SIZE", "0")
    return env


def pipeline_fingerprint(
    settings: Settings, config: dict, data: Sequence[Path], code: Sequence[str] = ()
) -> str:
    """Fingerprint of a model of our pipeline trained with `config` on `data`: it also covers
    our component code and the data the model bakes in (MODEL_DATA, hashed as data so
    data/lexicon's YAML counts), plus any `code` (repo-relative) that shapes a cached result."""
    return model_fingerprint(
        config,
        [*data, *(settings.root / p for p in MODEL_DATA)],
        [settings.root / p for p in (*COMPONENT_CODE, *code)],
        root=settings.root,
    )


def project_model(settings: Settings) -> ProjectModel:
    """The model the current config.yml + data/ should produce (trained or not)."""
    fp = pipeline_fingerprint(
        settings, rasa_config(settings.config_path), [settings.path(settings.nlu.data)]
    )
    return ProjectModel(fp, settings.path(settings.nlu.models) / f"{model_name(fp)}.tar.gz")


def ensure_nlu_runtime(settings: Settings) -> None:
    rasa = settings.path(settings.nlu.venv) / "bin" / "rasa"
    if not rasa.exists():
        raise TrainingError(
            f"the NLU runtime is not built ({rasa} is missing): run `make nlu-env` "
            "(or `make run` / `make test`, which build it)"
        )


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One trainer at a time per models/ folder (make run and make test may race)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_nlu(
    settings: Settings,
    *,
    config: dict,
    nlu_data: Sequence[Path],
    out: Path,
    quiet: bool = False,
) -> Path:
    """Train one NLU model with `config` on `nlu_data`; store it as `out` (atomically)."""
    ensure_nlu_runtime(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".train-", dir=out.parent) as tmp:
        tmp_dir = Path(tmp)
        cfg = tmp_dir / "config.yml"
        cfg.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
        name = out.name.removesuffix(".tar.gz")
        cmd = [
            str(settings.path(settings.nlu.venv) / "bin" / "rasa"), "train", "nlu",
            "--config", str(cfg), "--out", str(tmp_dir), "--fixed-model-name", name,
            "--nlu", *(str(p) for p in nlu_data),
        ]  # fmt: skip
        log = tmp_dir / "train.log"
        started = time.monotonic()
        with open(log, "w") as log_fh:
            proc = subprocess.run(
                cmd,
                cwd=settings.root,
                env=nlu_env(settings),
                # Progress is diagnostics: stderr, so stdout stays clean for results
                # (e.g. `careline parse` output piped to jq).
                stdout=log_fh if quiet else sys.stderr,
                stderr=subprocess.STDOUT if quiet else sys.stderr,
                check=False,
            )
        produced = tmp_dir / f"{name}.tar.gz"
        if proc.returncode != 0 or not produced.is_file():
            tail = log.read_text(errors="replace")[-3000:] if quiet else "(see output above)"
            raise TrainingError(f"rasa train nlu failed (exit {proc.returncode}):\n{tail}")
        os.replace(produced, out)
        if not quiet:
            print(f"trained {out.name} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return out


def ensure_project_model(settings: Settings, *, force: bool = False, quiet: bool = False) -> Path:
    """Return the trained model for the current project, training it only if needed."""
    model = project_model(settings)
    if model.exists and not force:
        return model.path
    with _exclusive(model.path.parent / ".train.lock"):
        if model.exists and not force:  # trained by someone else while we waited
            return model.path
        data = settings.path(settings.nlu.data)
        if not quiet:
            print(f"training NLU model {model.path.name} from {data} ...", file=sys.stderr)
        return train_nlu(
            settings,
            config=rasa_config(settings.config_path),
            nlu_data=[data],
            out=model.path,
            quiet=quiet,
        )


TRIAGE_BLIND = "data/triage/corpus/blind"  # writers in no training fold; scored, never tuned on


def triage_fold_scores(settings: Settings, out: Path, *, blind: bool, lowo: bool) -> Path:
    """Out-of-sample severity scores of the triage corpus (nlu.runtime.severity_folds) as
    JSONL in `out`, each row with the project model's intent for its text."""
    ensure_nlu_runtime(settings)
    model = ensure_project_model(settings, quiet=True)
    python = settings.path(settings.nlu.venv) / "bin" / "python"
    cmd = [
        str(python), "-m", "nlu.runtime.severity_folds",
        "--train", *(str(settings.root / p) for p in TRIAGE_CORPUS),
        "--model", str(model),
    ]  # fmt: skip
    if blind:
        cmd += ["--blind", str(settings.root / TRIAGE_BLIND)]
    if not lowo:
        cmd.append("--no-lowo")
    with open(out, "w", encoding="utf-8") as fh:
        proc = subprocess.run(
            cmd, cwd=settings.root, env=nlu_env(settings), stdout=fh, stderr=sys.stderr,
            check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise TrainingError(f"severity fold scoring failed (exit {proc.returncode}); see above")
    return out


def prune_models(settings: Settings, keep: int = 3) -> list[Path]:
    """Delete all but the newest `keep` models; returns what was removed."""
    models = sorted(
        settings.path(settings.nlu.models).glob("nlu-*.tar.gz"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    removed = models[keep:]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


__all__ = [
    "ProjectModel",
    "TrainingError",
    "ensure_nlu_runtime",
    "ensure_project_model",
    "nlu_env",
    "project_model",
    "prune_models",
    "train_nlu",
    "triage_fold_scores",
]
