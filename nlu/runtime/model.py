"""A loaded Rasa NLU model that parses text exactly as `rasa run --enable-api` does.

NLU runtime only (Python 3.10, imports rasa). We drive Rasa's graph runner directly instead
of `Agent.parse_message` so one call can carry a whole list of messages: the graph already
accepts lists, and that is the seam the micro-batching work builds on. The output dict is
assembled the way `rasa.core.processor.MessageProcessor.parse_message` assembles it, so
clients cannot tell our service from a stock Rasa server.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from rasa.core.agent import Agent
from rasa.core.channels.channel import UserMessage
from rasa.engine.constants import PLACEHOLDER_MESSAGE, PLACEHOLDER_TRACKER
from rasa.engine.runner.dask import DaskGraphRunner
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import (
    ENTITIES,
    INTENT,
    INTENT_NAME_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)

from nlu.batching import ParseInput
from nlu.runtime.severity_model import CONTEXT_KEY

log = logging.getLogger("careline.nlu.model")

_FINGERPRINT_RE = re.compile(r"nlu-([0-9a-f]{16})\.tar\.gz$")


@dataclass
class NLUModel:
    """A trained model, loaded once and reused for every request."""

    agent: Agent
    path: Path
    fingerprint: str
    load_seconds: float

    @classmethod
    def load(cls, path: Path) -> NLUModel:
        started = time.monotonic()
        agent = Agent.load(str(path))
        if agent.processor is None:
            raise RuntimeError(f"{path} did not load as a Rasa model")
        m = _FINGERPRINT_RE.search(path.name)
        fingerprint = m.group(1) if m else agent.processor.model_metadata.model_id
        model = cls(agent, path, fingerprint, time.monotonic() - started)
        log.info("loaded model %s in %.1f s", path.name, model.load_seconds)
        return model

    @cached_property
    def _plan(self) -> NLUPlan:
        processor = self.agent.processor
        assert processor is not None
        return NLUPlan.of(processor.graph_runner, processor.model_metadata.nlu_target)

    def parse_many(self, texts: Sequence[ParseInput]) -> list[dict[str, Any]]:
        """Parse several texts in one pass through the graph (blocking: run off the loop).

        An `Utterance`'s earlier messages travel as message metadata, where the severity
        component reads them (CONTEXT_KEY); every other component sees the text alone."""
        messages = [
            UserMessage(t)
            if isinstance(t, str)
            else UserMessage(t.text, metadata={CONTEXT_KEY: list(t.context)})
            for t in texts
        ]
        tracker = DialogueStateTracker.from_events("careline", [])
        parsed_messages = self._plan.run(
            {PLACEHOLDER_MESSAGE: messages, PLACEHOLDER_TRACKER: tracker}
        )
        out = []
        for parsed in parsed_messages:
            data: dict[str, Any] = {
                TEXT: "",
                INTENT: {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0},
                ENTITIES: [],
            }
            data.update(parsed.as_dict(only_output_properties=True))
            out.append(data)
        return out

    def parse(self, text: str) -> dict[str, Any]:
        return self.parse_many([text])[0]


@dataclass(frozen=True)
class NLUPlan:
    """The NLU part of a loaded model's graph, run node by node in a fixed order.

    Rasa's `DaskGraphRunner.run` works out the minimal subgraph for the targets and builds a
    dask task graph on every call; for a one-message parse that bookkeeping costs as much as
    the components themselves. The subgraph never changes once the model is loaded, so it is
    worked out here once. The nodes are the runner's own instantiated `GraphNode`s (same
    components, same hooks), called with the same `(node name, output)` inputs dask would
    pass, so the result is Rasa's.
    """

    nodes: tuple[tuple[str, Any, tuple[str, ...]], ...]  # (name, GraphNode, input names)
    target: str

    @classmethod
    def of(cls, runner: DaskGraphRunner, target: str) -> NLUPlan:
        schema = runner._graph_schema.minimal_graph_schema([target])
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order or name not in schema.nodes:
                return  # done, or a runtime input (message / tracker placeholder)
            for needed in schema.nodes[name].needs.values():
                visit(needed)
            order.append(name)

        visit(target)
        nodes = tuple(
            (n, runner._instantiated_nodes[n], tuple(schema.nodes[n].needs.values())) for n in order
        )
        return cls(nodes, target)

    def run(self, inputs: dict[str, Any]) -> Any:
        """The target node's output for these runtime inputs."""
        values: dict[str, Any] = {k: (k, v) for k, v in inputs.items()}
        for name, node, needs in self.nodes:
            values[name] = node(*(values[n] for n in needs))
        return values[self.target][1]
