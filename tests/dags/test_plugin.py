"""The airloop Airflow plugin: light to import, loaded by Airflow, its buttons and views.

Airflow is imported only in a subprocess with its own AIRFLOW_HOME: importing Airflow
configures it for the whole process (and creates directories under AIRFLOW_HOME), and the
plugins manager caches what it loaded.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import HEAVY_MODULES

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_FOLDER = ROOT / "plugins"
PLUGIN_FILE = PLUGINS_FOLDER / "airloop_plugin.py"

UI_URL = "http://mlflow.example.test:5123/"  # trailing slash on purpose
# Of airloop, the plugin may load only its standard-library vocabulary of links.
PLUGIN_FORBIDDEN = [*HEAVY_MODULES, "airloop.config", "airloop.pipelines", "fastapi"]

# Runs in the subprocess: load plugins the way the API server does, then ask the API server
# app (in process, no server) for the plugin's pages; report as JSON.
_PROBE = """
import json, os, sys

out_path = sys.argv[1]
heavy = json.loads(sys.argv[2])
before = set(sys.modules)

from airflow import plugins_manager
from airflow.plugins_manager import is_valid_plugin

plugins_manager.ensure_plugins_loaded()
info = plugins_manager.get_plugin_info()
links = plugins_manager.get_global_operator_extra_links()
loaded = [m for m in heavy if m in sys.modules and m not in before]

plugin = next((p for p in plugins_manager._get_plugins()[0] if p.name == "airloop"), None)

# What the REST API's /api/v2/plugins would serve (it drops plugins that fail this).
from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse
served = [PluginResponse.model_validate(dict(i)).model_dump(mode="json") for i in info]

# The API server with the plugin's app mounted, asked as a browser would.
from fastapi.testclient import TestClient
from airflow import settings
from airflow.api_fastapi.app import create_app, get_auth_manager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.models.revoked_token import RevokedToken

client = TestClient(create_app())
# A valid token's check reads this one table of the metadata database.
RevokedToken.__table__.create(settings.engine, checkfirst=True)
token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))
asked = {}
for route in ("/airloop/models", "/airloop/reports/models/x/reports/drift/a.html"):
    asked[route] = {
        "anonymous": client.get(route).status_code,
        "forged": client.get(route, headers={"Authorization": "Bearer a.b.c"}).status_code,
    }
page = client.get("/airloop/models", cookies={"_token": token})
by_bearer = client.get("/airloop/models", headers={"Authorization": f"Bearer {token}"})

with open(out_path, "w") as f:
    json.dump({
        "import_errors": {str(k): v for k, v in plugins_manager.get_import_errors().items()},
        "names": [i["name"] for i in info],
        "valid": plugin is not None and is_valid_plugin(type(plugin)),
        "bases": [f"{b.__module__}.{b.__qualname__}" for b in type(plugin).__mro__] if plugin else [],
        "source": str(plugin.source) if plugin else None,
        "links": [link.name for link in links],
        "served": served,
        "heavy_loaded": loaded,
        "asked": asked,
        "page": {"status": page.status_code, "type": page.headers.get("content-type"), "body": page.text},
        "page_by_bearer": by_bearer.status_code,
    }, f)
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow_home")
    out = home / "probe.json"
    broken_config = home / "configs" / "broken.yaml"
    broken_config.parent.mkdir()
    broken_config.write_text("name: broken\nnot_a_section: 1\n")
    # Nothing Airflow-related leaks in from the calling environment.
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AIRLOOP_MLFLOW"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PLUGINS_FOLDER),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRLOOP_MLFLOW_UI_URL=UI_URL,
        AIRLOOP_HOME=str(home / "state"),
        # One config, broken: the page lists it, and no model's registry is read.
        AIRLOOP_CONFIGS=str(broken_config),
    )
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(out), json.dumps(PLUGIN_FORBIDDEN)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


def test_plugin_module_imports_only_light_modules() -> None:
    """Module level holds the standard library and Airflow only (every component imports it)."""
    tree = ast.parse(PLUGIN_FILE.read_text())
    allowed = {"__future__", "os", "typing", "airflow", "airloop.orchestration.links"}
    for node in tree.body:
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            roots = {module if module.startswith("airloop") else module.split(".")[0]}
        else:
            continue
        assert roots <= allowed, f"line {node.lineno}: module-level import of {roots - allowed}"


def test_plugins_manager_loads_the_airloop_plugin(probe: dict[str, Any]) -> None:
    assert probe["import_errors"] == {}
    assert "airloop" in probe["names"]
    assert probe["valid"], "not a valid AirflowPlugin subclass"
    assert any(base.endswith("plugins_manager.AirflowPlugin") for base in probe["bases"])
    assert probe["source"] == "$PLUGINS_FOLDER/airloop_plugin.py"


def test_loading_the_plugin_imports_nothing_heavy(probe: dict[str, Any]) -> None:
    assert probe["heavy_loaded"] == []


def test_every_button_is_a_global_extra_link(probe: dict[str, Any]) -> None:
    from airloop.orchestration.links import BUTTONS

    assert probe["links"] == list(BUTTONS)


def test_plugin_is_served_by_the_rest_api(probe: dict[str, Any]) -> None:
    from airloop.orchestration.links import BUTTONS

    served = {plugin["name"]: plugin for plugin in probe["served"]}
    airloop = served["airloop"]
    assert len(airloop["global_operator_extra_links"]) == len(BUTTONS)
    assert airloop["fastapi_apps"] == [
        {"app": "airloop_plugin.LazyApp", "name": "airloop reports", "url_prefix": "/airloop"}
    ]
    assert airloop["external_views"] == [
        {
            "name": "airloop models",
            "href": "/airloop/models",
            "destination": "nav",
            "category": "browse",
            "icon": None,
            "icon_dark_mode": None,
            "url_route": "airloop-models",
            "nav_top_level": False,
        },
        {
            "name": "MLflow",
            "href": "http://mlflow.example.test:5123/#/experiments",
            "destination": "nav",
            "category": "browse",
            "icon": None,
            "icon_dark_mode": None,
            "url_route": None,
            "nav_top_level": False,
        },
    ]


def test_the_models_page_is_a_framed_view_of_the_plugins_own_route(probe: dict[str, Any]) -> None:
    """The UI frames `href` at /plugin/<url_route>; href is the plugin app's models route."""
    from airloop.orchestration.links import MODELS_ROUTE, PLUGIN_PREFIX

    served = {plugin["name"]: plugin for plugin in probe["served"]}
    (view,) = [v for v in served["airloop"]["external_views"] if v["name"] == "airloop models"]
    assert view["href"] == MODELS_ROUTE and MODELS_ROUTE.startswith(PLUGIN_PREFIX + "/")
    assert view["url_route"] and "/" not in view["url_route"]


def test_the_plugins_pages_refuse_requests_not_signed_in(probe: dict[str, Any]) -> None:
    """No token: 401; a token Airflow did not sign: 403 (as Airflow's own API answers)."""
    for route, answers in probe["asked"].items():
        assert answers == {"anonymous": 401, "forged": 403}, route


def test_a_signed_in_user_gets_the_models_page(probe: dict[str, Any]) -> None:
    page = probe["page"]
    assert page["status"] == 200, page["body"][-2000:]
    assert page["type"].startswith("text/html")
    assert "<h1>airloop models</h1>" in page["body"]
    assert "0 models, 1 broken config" in page["body"]
    assert "broken.yaml" in page["body"] and "not_a_section" in page["body"]
    # At the host's root, the page's Airflow UI links are absolute paths from there.
    assert 'href="/dags?tags=airloop"' in page["body"]
    assert probe["page_by_bearer"] == 200
