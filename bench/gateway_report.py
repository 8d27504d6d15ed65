"""The gateway bench's report: the Markdown table of docs/BENCHMARKS.md, the per-phase
details, the server-side breakdown and the JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import (  # bench/common.py (this folder is on sys.path when run as a script)
    fmt,
    ratio,
)
from gateway_workload import PEERS, PhaseResult

# -- report ----------------------------------------------------------------------------------


def markdown_table(results: Sequence[PhaseResult]) -> str:
    """Every system per N, then careline's ratios to each stock peer (msg/s: higher is
    better for careline; latency and memory: lower is better)."""
    head = (
        "| system | N | messages | errors | msg/s | p50 ms | p99 ms "
        "| peak RSS gateway MB | peak RSS NLU MB | peak RSS total MB |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    for n in sorted({r.n for r in results}):
        cell = {r.system: r for r in results if r.n == n}
        for r in cell.values():
            rss = r.peak_rss_mb
            nlu = fmt(rss["nlu"]) if "nlu" in rss else "(in process)"
            rows.append(
                f"| {r.system} | {r.n} | {r.replies} | {r.error_count} | {fmt(r.msg_per_s, 1)} "
                f"| {fmt(r.p50_ms)} | {fmt(r.p99_ms)} | {fmt(rss['gateway'])} | {nlu} "
                f"| {fmt(sum(rss.values()))} |"
            )
        for peer, short in PEERS.items():
            s = cell.get(peer)
            for name, c in cell.items():  # careline, and careline with --workers N
                if s and name.startswith("careline"):
                    rows.append(
                        f"| {name}/{short} | {n} | | | {ratio(c.msg_per_s, s.msg_per_s)} "
                        f"| {ratio(c.p50_ms, s.p50_ms)} | {ratio(c.p99_ms, s.p99_ms)} | | "
                        f"| {ratio(sum(c.peak_rss_mb.values()), sum(s.peak_rss_mb.values()))} |"
                    )
    return "\n".join(rows)


def details(results: Sequence[PhaseResult]) -> str:
    """What the table leaves out: error kinds, handoffs, unsent messages, load, duration."""
    lines = []
    for r in results:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(r.errors.items())) or "none"
        lines.append(
            f"- {r.system} N={r.n}: {r.replies}/{r.planned} answered in {r.seconds:.1f} s; "
            f"errors: {errors}; handoffs to a person: {r.handoffs}; "
            f"not sent: {r.planned - r.sent}; mean {fmt(r.mean_ms)} ms, max {fmt(r.max_ms)} ms; "
            f"load avg {r.load_before[0]:.2f} → {r.load_after[0]:.2f}"
        )
        if r.connect_p50_ms is not None:
            lines.append(
                f"  - connect (hello → welcome): p50 {fmt(r.connect_p50_ms)} ms, "
                f"p99 {fmt(r.connect_p99_ms)} ms"
            )
        if r.listen_overflows:
            lines.append(
                f"  - kernel listen-queue overflows during the phase: {r.listen_overflows} "
                "(SYNs dropped; those clients retried after 1, 3, 7, 15 s ...)"
            )
        for kind, sample in r.error_samples.items():
            lines.append(f"  - first {kind}: {sample}")
        cpu = ", ".join(
            f"{name} {sec:.1f} s ({1000 * sec / r.replies:.1f} ms/message)" if r.replies else name
            for name, sec in r.cpu_s.items()
        )
        lines.append(f"  - CPU time: {cpu} over {r.seconds:.1f} s wall (2 cores)")
        if r.server_metrics:
            lines.append(f"  - {server_breakdown(r.server_metrics)}")
    return "\n".join(lines)


def _mean_ms(m: dict[str, float], histogram: str) -> str:
    count = m.get(f"{histogram}_count", 0.0)
    return (
        f"{1000 * m.get(f'{histogram}_sum', 0.0) / count:.0f} ms (n={count:.0f})" if count else "—"
    )


def server_breakdown(m: dict[str, float]) -> str:
    """Where careline's time went, from its own metrics (means over the phase)."""
    replies = {
        name.split('kind="')[1].split('"')[0]: int(v)
        for name, v in m.items()
        if name.startswith("careline_bot_replies_total{")
    }
    return (
        f"gateway NLU call mean {_mean_ms(m, 'careline_nlu_call_seconds')}; "
        f"NLU service parse mean (queueing included) {_mean_ms(m, 'careline_nlu_parse_seconds')}; "
        f"bot replies by kind {replies}; escalations "
        f"{m.get('careline_escalations_total', 0):.0f}; NLU failures "
        f"{m.get('careline_nlu_failures_total', 0):.0f}"
    )


def gateway_log_summary(log: Path) -> dict[str, Any]:
    """Warnings and errors the gateway logged (JSON lines), for the owner to read."""
    counts: Counter[str] = Counter()
    samples: list[str] = []
    if not log.is_file():
        return {"counts": {}, "samples": []}
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                counts["non-json error line"] += 1
                if len(samples) < 10:
                    samples.append(line[:500])
            continue
        if isinstance(doc, dict) and doc.get("level") in ("warning", "error", "critical"):
            counts[f"{doc['level']}: {doc.get('msg', '')[:80]}"] += 1
            if len(samples) < 10:
                samples.append(line[:500])
    return {"counts": dict(counts), "samples": samples}


def write_json(path: Path, args: argparse.Namespace, results: Sequence[PhaseResult],
               extra: dict[str, Any]) -> None:  # fmt: skip
    doc = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "results": [asdict(r) for r in results],
        **extra,
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
