"""The airloop pages of the Airflow UI, served inside Airflow's API server.

- `links.REPORTS_ROUTE`: the report files the Airflow UI's airloop buttons open (Great
  Expectations Data Docs, Evidently drift reports, model cards and gate decisions), from
  each model's reports folder under `$AIRLOOP_HOME`.
- `links.MODELS_ROUTE`: the page of the deployment's models (`models_page`), the plugin's
  "airloop models" view in the UI's navigation.

Both for signed-in users only: the UI's session cookie or a bearer token, checked as
Airflow's own API checks them. The airloop plugin mounts this app; FastAPI and Airflow's API
modules load on its first request.
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse

from airloop.orchestration.links import MODELS_ROUTE, PLUGIN_PREFIX, REPORTS_ROUTE, report_file
from airloop.orchestration.models_page import models_page
from airloop.paths import StatePaths

# Markdown shown as text in the browser, not downloaded.
MEDIA_TYPES = {".md": "text/plain; charset=utf-8", ".json": "application/json"}


def reports_app() -> FastAPI:
    app = FastAPI(title="airloop reports", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route(REPORTS_ROUTE.removeprefix(PLUGIN_PREFIX) + "/{relative:path}", report, methods=["GET"])
    app.add_api_route(MODELS_ROUTE.removeprefix(PLUGIN_PREFIX), models, methods=["GET"])
    return app


async def report(relative: str, request: Request) -> FileResponse:
    await require_signed_in(request)
    path = report_file(StatePaths.from_env().home, relative)
    if path is None:
        raise HTTPException(404, f"no report {relative!r}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix))


async def models(request: Request) -> HTMLResponse:
    """The deployment's models, read afresh on every request (the registry and the records)."""
    await require_signed_in(request)
    # Where the Airflow UI lives: this app's mount point, less the plugin's prefix ("" unless
    # the API server runs under a base path).
    root = str(request.scope.get("root_path", "")).removesuffix(PLUGIN_PREFIX)
    # Reading the registry and the records blocks: off the API server's event loop.
    page = await run_in_threadpool(models_page, root)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def require_signed_in(request: Request) -> None:
    """Raise 401/403 unless the request carries a token Airflow's API would accept."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    await resolve_user_from_token(token)
