"""The report files the Airflow UI's airloop buttons open, served inside Airflow's API server.

Great Expectations Data Docs, Evidently drift reports, model cards and gate decisions, from
`$AIRLOOP_HOME/reports`, at `airloop.ui_links.REPORTS_ROUTE`, for signed-in users only: the
UI's session cookie or a bearer token, checked as Airflow's own API checks them. The airloop
plugin mounts this app; FastAPI and Airflow's API modules load on its first request.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse

from airloop.ui_links import PLUGIN_PREFIX, REPORTS_ROUTE

# Markdown shown as text in the browser, not downloaded.
MEDIA_TYPES = {".md": "text/plain; charset=utf-8", ".json": "application/json"}


def reports_app() -> FastAPI:
    app = FastAPI(title="airloop reports", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route(REPORTS_ROUTE.removeprefix(PLUGIN_PREFIX) + "/{relative:path}", report, methods=["GET"])
    return app


async def report(relative: str, request: Request) -> FileResponse:
    await require_signed_in(request)
    root = Path(os.environ.get("AIRLOOP_HOME", ".state")).resolve() / "reports"
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, f"no report {relative!r}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix))


async def require_signed_in(request: Request) -> None:
    """Raise 401/403 unless the request carries a token Airflow's API would accept."""
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    await resolve_user_from_token(token)
