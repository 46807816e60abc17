"""A model card per registered version, in Markdown and HTML.

What a reviewer needs without opening MLflow: what the model predicts from which
features, the data it was trained and judged on (with DVC hashes to restore it), its
metrics against the champion and the naive baseline, per segment, the gate's decision,
its semantic version and its lineage (Airflow run, git commit, config hash, MLflow run).
Written to reports/model_cards/ and logged to the version's MLflow run under model_card/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from airloop.config import AirloopConfig
from airloop.evaluation.records import decision_markdown
from airloop.paths import StatePaths
from airloop.registry.semver import SEMVER_TAG
from airloop.registry.tracking import tracking_client

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem}"
    "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2rem}"
)


def card_markdown(
    config: AirloopConfig,
    version: str,
    record: dict,
    run: Any,
    version_tags: dict[str, str],
    hyperparameters: dict[str, Any],
) -> str:
    """The card's Markdown, from the config, the decision record and the version's MLflow run.

    Lineage comes from the registered version's tags where it has them, else the run's.
    """
    tags, params = {**run.data.tags, **version_tags}, run.data.params
    metrics = record["metrics"]
    names = list(metrics["candidate"])
    target = config.dataset.target
    semver = tags.get(SEMVER_TAG)
    lines = [
        f"# Model card: {config.model.registered_name} v{version}",
        "",
        f"Predicts `{target.column}`{_label_rule(config, record)} ({config.task.replace('_', ' ')}) from: "
        + ", ".join(f"`{f}` ({config.dataset.columns[f].type})" for f in config.dataset.features)
        + ".",
        "",
        "## Model",
        "",
        f"- Family: `{params.get('family')}`, seed {params.get('seed')}, trained on {params.get('device')}"
        f" ({tags.get('airloop.device', '-')})",
        "- Hyperparameters: "
        + ", ".join(f"`{k}={v}`" for k, v in sorted(hyperparameters.items()))
        + (" (search trial " + tags["airloop.trial"] + ")" if "mlflow.parentRunId" in tags else ""),
        f'- Load: `mlflow.sklearn.load_model("models:/{config.model.registered_name}/{version}")`',
        f"- Semantic version: `{semver}` (MAJOR: another input schema or task, MINOR: retrained "
        "on other data or settings, PATCH: the same inputs rebuilt)"
        if semver
        else "- Semantic version: none (registered without one)",
        "",
        "## Data",
        "",
        f"- Training: partitions {', '.join(record['train_partitions'])}, DVC hash "
        f"`{record['train_hash']}` ({params.get('train_rows')} rows fitted, "
        f"{params.get('validation_rows')} held out for validation)",
        f"- Evaluation: partition `{record['eval_partition']}`, DVC hash `{record['eval_hash']}`",
        "- Restore either: `airloop data checkout <hash>`",
        "",
        "## Metrics on the evaluation set",
        "",
        "| metric | this model | champion at the time | naive baseline |",
        "|---|---:|---:|---:|",
    ]
    champion = metrics.get("champion") or {}
    for name in names:
        champ = f"{champion[name]:.4f}" if name in champion else "-"
        lines.append(
            f"| {name} | {metrics['candidate'][name]:.4f} | {champ} | {metrics['baseline'][name]:.4f} |"
        )
    lines += [
        "",
        "## Lineage",
        "",
        f"- Airflow run: `{tags.get('airloop.airflow_run_id', '-')}`",
        f"- MLflow run: `{run.info.run_id}`",
        f"- Git commit: `{tags.get('airloop.git_commit', '-')}`",
        f"- Config hash: `{tags.get('airloop.config_hash', '-')}`",
        "",
        "## The gate's decision",
        "",
    ]
    decision = decision_markdown(record).split("\n", 2)[2]  # without its title
    return "\n".join(lines) + "\n" + decision


def _label_rule(config: AirloopConfig, record: dict) -> str:
    """What the model answers of the label: its threshold, positive class or classes."""
    target = config.dataset.target
    if target.positive_above is not None:
        return f" > {target.positive_above}"
    if target.positive is not None:
        return f" == {target.positive!r}"
    if record.get("classes"):
        return " among " + ", ".join(f"`{c}`" for c in record["classes"])
    return ""


def card_html(markdown: str, title: str) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_model_card(config: AirloopConfig, paths: StatePaths, version: str, record: dict) -> Path:
    """Write the card of registered `version` (Markdown and HTML) and log both to its run."""
    client = tracking_client(paths)
    run = client.get_run(record["candidate_run_id"])
    registered = client.get_model_version(config.model.registered_name, version)
    # The trial's own hyperparameters: the exact config the run trained with.
    trained_with = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json")).read_text())
    hyperparameters = trained_with["model"]["params"]
    markdown = card_markdown(config, version, record, run, dict(registered.tags), hyperparameters)
    title = f"{config.model.registered_name} v{version}"
    stem = paths.report_dir("model_cards") / f"{config.model.registered_name}-v{version}"
    written = {Path(f"{stem}.md"): markdown, Path(f"{stem}.html"): card_html(markdown, title)}
    for path, text in written.items():
        path.write_text(text)
        client.log_artifact(run.info.run_id, str(path), "model_card")
    return Path(f"{stem}.md")
