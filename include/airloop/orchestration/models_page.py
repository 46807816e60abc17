"""The Airflow UI's airloop page: every model of the deployment, where it stands, and links.

One row per model (`airloop.model_status`): its champion (to the MLflow UI's model version),
its last continuous-training decision (to the decision record and its DAG run), its last
drift check (to the drift report), its last alias moves from the promotion ledger (who,
what, when, each with its evidence linked), and its DAGs (each one, and the DAG list
filtered by the model's tag). Broken configs are listed with their message.
`render_models_page` is pure: statuses in, escaped HTML out; `models_page` gathers the
statuses of the deployment.

The page is shown inside the Airflow UI, in the iframe of a plugin's external view. That
iframe is sandboxed without `allow-top-navigation` and `allow-popups` (Airflow 3.3), so a
plain `target="_top"` or `target="_blank"` link does nothing there; the page's script sends
Airflow UI links to the UI's own router (same origin) and opens MLflow in a new tab from
the UI's page. Outside a frame the links work as written. Report files open in the frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from airloop.orchestration.links import BUTTONS, FILE_KINDS, link_references, link_url, mlflow_ui_base_url
from airloop.orchestration.naming import STAGES, dag_id, model_tag
from airloop.paths import StatePaths
from airloop.registry.ledger import URL_PREFIXES, version_text

if TYPE_CHECKING:
    from airloop.config import AirloopConfig

    StatusOf = Callable[[AirloopConfig, StatePaths], dict[str, Any]]

TITLE = "airloop models"


def dag_url(dag: str, root: str = "") -> str:
    """The Airflow UI's page of DAG `dag` (`root`: the UI's base path, "" at the host's root)."""
    return f"{root}/dags/{quote(dag, safe='')}"


def dag_run_url(dag: str, run_id: str, root: str = "") -> str:
    return f"{dag_url(dag, root)}/runs/{quote(run_id, safe='')}"


def dag_list_url(tag: str, root: str = "") -> str:
    """The Airflow UI's DAG list filtered by `tag` (the UI's own tag links: `/dags?tags=<tag>`)."""
    return f"{root}/dags?{urlencode({'tags': tag})}"


def _a(href: str, text: str, kind: str) -> str:
    """A link; `kind` is where it opens: "ui" (the Airflow UI's page), "mlflow" (a new tab),
    "report" (in place: inside the Airflow UI's frame)."""
    target = {"ui": ' target="_top"', "mlflow": ' target="_blank" rel="noopener noreferrer"'}.get(kind, "")
    return f'<a href="{escape(href)}"{target} data-airloop="{kind}">{escape(text)}</a>'


def _when(at: str | None) -> str:
    return f'<time datetime="{escape(at)}">{escape(at.replace("T", " "))}</time>' if at else ""


def _report_url(home: Path, path: str | None, kind: str, root: str) -> str | None:
    """The plugin's URL of a report file, or None unless it lies inside a reports folder."""
    if not path:
        return None
    reference = link_references(home, **{kind: path}).get(kind)
    return f"{root}{link_url(kind, reference, '')}" if reference else None


def _champion(status: Mapping[str, Any], mlflow_ui: str) -> str:
    champion = status.get("champion")
    name = str(status.get("registered_name") or status["model"])
    if not champion:
        return f'<span class="muted">none yet</span><div class="muted">{escape(name)}</div>'
    version = str(champion["version"])
    url = link_url("model_version", f"{name}/{version}", mlflow_ui)
    return _a(url, f"{name} v{version}", "mlflow")


def _decision(status: Mapping[str, Any], home: Path, root: str) -> str:
    decision = status.get("last_decision")
    if not decision:
        return '<span class="muted">none yet</span>'
    parts = [f'<span class="verdict">{escape(str(decision["verdict"]))}</span> {_when(decision.get("at"))}']
    if decision.get("reason"):
        parts.append(f'<div class="reason">{escape(str(decision["reason"]))}</div>')
    if decision.get("triggers"):
        parts.append(
            f'<div class="muted">triggers: {escape(", ".join(map(str, decision["triggers"])))}</div>'
        )
    links = []
    record = _report_url(home, decision.get("record"), "decision", root)
    if record:
        links.append(_a(record, "decision record", "report"))
    if decision.get("run_key"):
        run = dag_run_url(dag_id(status["model"], "continuous_training"), str(decision["run_key"]), root)
        links.append(_a(run, "its run", "ui"))
    if links:
        parts.append(f'<div class="links">{" · ".join(links)}</div>')
    return "".join(parts)


def _drift(status: Mapping[str, Any], home: Path, root: str) -> str:
    drift = status.get("last_drift")
    if not drift:
        return '<span class="muted">none yet</span>'
    parts = [f'<span class="verdict">{escape(str(drift["verdict"]))}</span> {_when(drift.get("at"))}']
    if drift.get("partition"):
        parts.append(f'<div class="muted">window: {escape(str(drift["partition"]))}</div>')
    if drift.get("reason"):
        parts.append(f'<div class="reason">{escape(str(drift["reason"]))}</div>')
    links = []
    report = _report_url(home, drift.get("report"), "drift_report", root)
    if report:
        links.append(_a(report, "drift report", "report"))
    links.append(_a(f"{dag_url(dag_id(status['model'], 'monitor_drift'), root)}/runs", "its runs", "ui"))
    parts.append(f'<div class="links">{" · ".join(links)}</div>')
    return "".join(parts)


# Evidence kinds as the task buttons name them ("gate decision"); others by their own name.
EVIDENCE_LABELS = {kind: button.lower() for button, kind in BUTTONS.items()}


def _evidence_link(kind: str, reference: str, home: Path, mlflow_ui: str, root: str) -> str | None:
    """A link to one piece of a move's evidence, as the task buttons link it: a URL or an
    MLflow run or version in a new tab, a report file in place; None for other files."""
    label = EVIDENCE_LABELS.get(kind, kind.replace("_", " "))
    if reference.startswith(URL_PREFIXES):
        return _a(reference, label, "mlflow")
    if kind in ("mlflow_run", "model_version"):
        return _a(link_url(kind, reference, mlflow_ui), label, "mlflow")
    url = _report_url(home, str(home / reference), kind if kind in FILE_KINDS else "decision", root)
    return _a(url, label, "report") if url else None


def _moves(status: Mapping[str, Any], home: Path, mlflow_ui: str, root: str) -> str:
    ledger = status.get("ledger") or {}
    count = int(ledger.get("count") or 0)
    if not count:
        return '<span class="muted">none yet</span>'
    items = []
    for entry in ledger.get("last") or []:
        action = str(entry.get("action") or "").replace("_", " ")
        parts = [
            f'{_when(entry.get("at"))} <span class="verdict">{escape(action)}</span> '
            f"{escape(version_text(entry))}"
            f'<div class="muted">by {escape(str(entry.get("actor") or "unknown"))}</div>'
        ]
        if entry.get("reason"):
            parts.append(f'<div class="reason">{escape(str(entry["reason"]))}</div>')
        evidence = entry.get("evidence") or {}
        links = [_evidence_link(str(k), str(v), home, mlflow_ui, root) for k, v in evidence.items() if v]
        if any(links):
            parts.append(f'<div class="links">{" · ".join(link for link in links if link)}</div>')
        items.append(f"<li>{''.join(parts)}</li>")
    total = f"{count} move{'s' if count != 1 else ''} in all"
    hint = f"airloop --model {status['model']} history"
    return (
        f'<ul class="moves">{"".join(items)}</ul>'
        f'<div class="muted">{escape(total)}: <code>{escape(hint)}</code></div>'
    )


def _dags(status: Mapping[str, Any], root: str) -> str:
    items = "".join(f"<li>{_a(dag_url(dag, root), dag, 'ui')}</li>" for dag in status.get("dags", []))
    return f'<ul class="dags">{items}</ul>'


def _model_row(status: Mapping[str, Any], home: Path, mlflow_ui: str, root: str) -> str:
    model = str(status["model"])
    head = (
        f'<td><div class="model">{escape(model)}</div>'
        f'<div class="muted">{escape(str(status.get("task") or ""))}</div>'
        f'<div class="links">{_a(dag_list_url(model_tag(model), root), "its DAGs", "ui")}</div></td>'
    )
    if status.get("error"):
        body = f'<td colspan="4" class="error">status unavailable: {escape(str(status["error"]))}</td>'
    else:
        body = (
            f"<td>{_champion(status, mlflow_ui)}</td>"
            f"<td>{_decision(status, home, root)}</td>"
            f"<td>{_drift(status, home, root)}</td>"
            f"<td>{_moves(status, home, mlflow_ui, root)}</td>"
        )
    return f'<tr id="model-{escape(model)}">{head}{body}<td>{_dags(status, root)}</td></tr>'


def _broken(broken: Mapping[Path, str]) -> str:
    if not broken:
        return ""
    items = "".join(
        f"<li><code>{escape(str(path))}</code><pre>{escape(message)}</pre></li>"
        for path, message in sorted(broken.items(), key=lambda item: str(item[0]))
    )
    return (
        '<h2>Broken configs</h2><p class="muted">Each loads no model until it is fixed.</p>'
        f'<ul class="broken">{items}</ul>'
    )


STYLE = """
:root { color-scheme: light dark; font: 14px/1.45 system-ui, sans-serif; }
body { margin: 1rem 1.25rem; }
h1 { font-size: 1.35rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin-top: 1.75rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .5rem .75rem; border-bottom: 1px solid #8884; }
th { font-weight: 600; white-space: nowrap; }
.model { font-weight: 600; } .muted { opacity: .65; } .verdict { font-weight: 600; }
.reason { max-width: 32rem; } .links { margin-top: .2rem; }
ul.dags { margin: 0; padding-left: 1rem; } ul.broken { padding-left: 1rem; }
ul.moves { margin: 0; padding-left: 1rem; } ul.moves li { margin-bottom: .35rem; }
pre { white-space: pre-wrap; margin: .25rem 0 1rem; } .error { color: #c0392b; }
a { color: #0b72c2; } @media (prefers-color-scheme: dark) { a { color: #5fb3f5; } }
"""

# Inside the Airflow UI's sandboxed frame, a link can navigate neither the top page nor open a
# tab. Same origin, the frame may reach the UI's page: Airflow UI links go through its router
# (history.pushState + popstate, as a Back/Forward does), MLflow links open from its document.
SCRIPT = """
(function () {
  if (window.top === window.self) return;
  var top = window.top;
  try { void top.location.href; } catch (e) { return; }
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-airloop]");
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
        || event.shiftKey || event.altKey) return;
    var kind = link.getAttribute("data-airloop");
    if (kind === "ui") {
      event.preventDefault();
      top.history.pushState(null, "", link.href);
      top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
    } else if (kind === "mlflow") {
      event.preventDefault();
      var opener = top.document.createElement("a");
      opener.href = link.href; opener.target = "_blank"; opener.rel = "noopener noreferrer";
      top.document.body.appendChild(opener); opener.click(); opener.remove();
    }
  });
})();
"""


def render_models_page(
    statuses: Sequence[Mapping[str, Any]],
    broken: Mapping[Path, str],
    *,
    home: Path,
    mlflow_ui: str,
    root: str = "",
) -> str:
    """The page's HTML: one row per `model_status` dict (one with an "error" says why its status
    is unavailable), then the `broken` configs ({file: message}). Every value is escaped.

    `home` is the state home (report files are linked only inside its reports folders),
    `mlflow_ui` the MLflow UI's base URL, `root` the Airflow UI's base path ("" at the root).
    """
    count = f"{len(statuses)} model{'s' if len(statuses) != 1 else ''}"
    if broken:
        count += f", {len(broken)} broken config{'s' if len(broken) != 1 else ''}"
    rows = "".join(_model_row(status, home, mlflow_ui, root) for status in statuses)
    table = (
        "<table><thead><tr><th>Model</th><th>Champion</th><th>Last decision</th>"
        f"<th>Last drift check</th><th>Last moves</th><th>DAGs</th></tr></thead><tbody>{rows}</tbody></table>"
        if statuses
        else '<p class="muted">No model configs load in this deployment.</p>'
    )
    summary = (
        f'<p class="muted">{escape(count)} · '
        f"{_a(dag_list_url('airloop', root), 'all airloop DAGs', 'ui')} · "
        f"{_a(f'{mlflow_ui}/#/models', 'MLflow models', 'mlflow')}</p>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{TITLE}</title><style>{STYLE}</style></head>"
        f"<body><h1>{TITLE}</h1>{summary}{table}{_broken(broken)}<script>{SCRIPT}</script></body></html>"
    )


def model_statuses(
    models: Mapping[str, AirloopConfig], paths: StatePaths, status_of: StatusOf | None = None
) -> list[dict[str, Any]]:
    """Each model's `model_status`, by name; a model whose status cannot be read (an MLflow
    server down, say) gets a row saying why, so one model never hides the others."""
    if status_of is None:
        from airloop.model_status import model_status

        status_of = model_status
    statuses = []
    for name in sorted(models):
        config = models[name]
        try:
            statuses.append(status_of(config, paths))
        except Exception as error:  # shown on the page, for this model only
            statuses.append(
                {
                    "model": name,
                    "task": config.task,
                    "registered_name": config.model.registered_name,
                    "dags": [dag_id(name, stage) for stage in STAGES],
                    "error": f"{type(error).__name__}: {error}",
                }
            )
    return statuses


def models_page(root: str = "") -> str:
    """The page for the deployment the environment names (`load_deployment`, `$AIRLOOP_HOME`,
    `$AIRLOOP_MLFLOW_UI_URL`); `root` as in `render_models_page`."""
    from airloop.deployment import load_deployment

    deployment = load_deployment()
    paths = StatePaths.from_env()
    return render_models_page(
        model_statuses(deployment.models, paths),
        deployment.broken,
        home=paths.home,
        mlflow_ui=mlflow_ui_base_url(),
        root=root,
    )
