"""Decision records: what a continuous-training run compared, decided and why.

Each record is a JSON file (for tools) and, once the gate has decided, a Markdown file
beside it (for people): the numbers, the bootstrap interval, every check and the verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_record(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=2, default=str))
    if "decision" in record:
        path.with_suffix(".md").write_text(decision_markdown(record))


def log_record(client: Any, run_id: str, path: Path) -> None:
    """Log a gated record (JSON and Markdown) to the candidate's MLflow run under decision/."""
    for written in (path, path.with_suffix(".md")):
        client.log_artifact(run_id, str(written), "decision")


def gate_tables(decision: dict, evidence: dict, candidate: str = "candidate") -> list[str]:
    """The gate's numbers as Markdown: each model's metric, the bootstrap interval, every check."""
    champion = decision.get("champion_version")
    lines = [
        f"| model | {decision['metric']} |",
        "|---|---:|",
        f"| {candidate} | {decision['candidate']:.4f} |",
        f"| champion{' v' + str(champion) if champion else ''} | {_number(decision['champion'])} |",
        f"| naive baseline | {decision['baseline']:.4f} |",
    ]
    interval = evidence.get("gain_interval")
    if interval:
        lines += ["", f"Paired bootstrap interval of the gain: [{interval[0]:+.4f}, {interval[1]:+.4f}]"]
    lines += ["", "| check | passed | detail |", "|---|---|---|"]
    lines += [
        f"| {c['name']} | {'yes' if c['passed'] else 'no'} | {c['detail']} |" for c in decision["checks"]
    ]
    return lines


def decision_markdown(record: dict) -> str:
    decision, evidence = record["decision"], record.get("evidence", {})
    metric = decision["metric"]
    verdict = "PROMOTE" if decision["promote"] else "KEEP THE CHAMPION"
    lines = [
        f"# Promotion decision: {verdict}",
        "",
        f"- Run: `{record['run_key']}` (triggers: {', '.join(record.get('triggers', [])) or '-'})",
        f"- Evaluation set: partition `{record['eval_partition']}`, DVC hash `{record['eval_hash']}`",
        f"- Training data: {', '.join(record['train_partitions'])}, DVC hash `{record['train_hash']}`",
        f"- Candidate: MLflow run `{record['candidate_run_id']}`",
        f"- Reason: {decision['reason']}",
        "",
    ]
    lines += gate_tables(decision, evidence)
    if evidence.get("segments"):
        lines += ["", f"| segment | rows | champion {metric} | candidate {metric} |", "|---|---:|---:|---:|"]
        lines += [
            f"| {s['column']}={s['value']} | {s['rows']} | {s['champion']:.4f} | {s['candidate']:.4f} |"
            for s in evidence["segments"]
        ]
    if record.get("approval"):  # gate.require_approval: a person's answer (airloop.pipelines.approval)
        approval = record["approval"]
        lines += [
            "",
            f"Approval of v{approval['version']}: {approval['decision']} ({approval['reason']}), "
            f"at {approval['at']}.",
        ]
    if record.get("promoted"):
        promoted = record["promoted"]
        lines += ["", f"Promoted: version {promoted['version']}, bento `{promoted['bento']}`."]
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
