"""The Airflow UI in headless Chromium (Debian's, driven by Playwright) against the running
production-topology stack: sign in, see airloop's DAGs, retrain through the trigger form
with another setting, watch the run succeed, and follow the task's buttons to the MLflow
run and to the model card. Screenshots of each step are kept in test-artifacts/browser/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from airloop.paths import PROJECT_ROOT
from tests.e2e.conftest import Production

pytestmark = pytest.mark.e2e
CHROMIUM = "/usr/bin/chromium"
# As root, with no network: no sandbox, no GPU, and nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = PROJECT_ROOT / "test-artifacts" / "browser"


@pytest.fixture
def page() -> Iterator:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def run_champion_version(client, run_id: str) -> str:
    """The version the run's promote_champion promoted."""
    promoted = f"dags/flights__continuous_training/dagRuns/{run_id}/taskInstances/promote_champion"
    return str(client.request("GET", f"{promoted}/xcomEntries/return_value")["value"]["version"])


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_person_retrains_from_the_trigger_form_and_follows_the_links(page, production: Production) -> None:
    stack = production.stack
    base, client = stack.url, stack.client()

    page.goto(base)  # not signed in: Airflow's login page
    page.get_by_label("Username").fill(client.username)
    page.get_by_label("Password").fill(client.password)
    shot(page, "01-sign-in")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)

    page.goto(f"{base}/dags")
    for dag in (
        "flights__continuous_training",
        "flights__ingest_data",
        "flights__monitor_drift",
        "flights__rollback_champion",
    ):
        page.get_by_role("link", name=dag, exact=True).first.wait_for()
    shot(page, "02-dags")

    # The trigger form: the DAG's typed Params, one of them changed for this run.
    run_id = f"ui__{time.time_ns()}"
    page.goto(f"{base}/dags/flights__continuous_training")
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_text("Training window (partitions)").wait_for()
    form.locator("input[name=element_window_partitions]").fill("1")
    form.get_by_role("button", name="Advanced Options").click()
    form.locator("input[name=dagRunId]").fill(run_id)
    shot(page, "03-trigger-form")
    form.get_by_role("button", name="Trigger", exact=True).click()
    form.wait_for(state="hidden")
    run = client.request("GET", f"dags/flights__continuous_training/dagRuns/{run_id}")
    assert run["conf"]["window_partitions"] == 1

    # The run's page, until its state badge says how it ended.
    page.goto(f"{base}/dags/flights__continuous_training/runs/{run_id}")
    badge = page.get_by_test_id("state-badge").first
    deadline = time.monotonic() + 900
    while badge.inner_text().strip() not in ("Success", "Failed"):
        assert time.monotonic() < deadline, "the run did not finish within 15 minutes"
        time.sleep(5)
        page.reload()
    shot(page, "04-run")
    assert badge.inner_text().strip() == "Success"

    # The evaluating task's buttons: the MLflow run (in the MLflow UI, another tab) ...
    evaluated = f"dags/flights__continuous_training/dagRuns/{run_id}/taskInstances/evaluate_candidate"
    candidate = client.request("GET", f"{evaluated}/xcomEntries/return_value")["value"]["candidate_run_id"]
    page.goto(f"{base}/dags/flights__continuous_training/runs/{run_id}/tasks/evaluate_candidate/details")
    mlflow_link = page.get_by_role("link", name="MLflow run")
    assert mlflow_link.get_attribute("href") == f"{stack.mlflow_url}/#/runs/{candidate}"
    shot(page, "05-task-links")
    with page.expect_popup() as opened:
        mlflow_link.click()
    mlflow = opened.value
    mlflow.wait_for_url(re.compile(rf"#/.*runs/{candidate}"))
    mlflow.get_by_text("val_roc_auc").first.wait_for(timeout=60_000)  # the run's own metrics
    shot(mlflow, "06-mlflow-run")

    # ... and, on the promoting task, the model card, served by the plugin to this signed-in user.
    page.goto(f"{base}/dags/flights__continuous_training/runs/{run_id}/tasks/promote_champion/details")
    with page.expect_navigation():
        page.get_by_role("link", name="Model card").click()
    page.get_by_role("heading", name=re.compile(r"^Model card: .+ v\d+$")).wait_for()
    assert page.get_by_text(run_id).count() >= 1  # the card's lineage names this run
    shot(page, "07-model-card")

    # The airloop page in the UI's navigation: the model, its champion and its last decision.
    champion = run_champion_version(client, run_id)
    page.goto(f"{base}/plugin/airloop-models")
    row = page.frame_locator("iframe").first.locator("tr#model-flights")
    row.get_by_text(f"v{champion}", exact=False).first.wait_for(timeout=60_000)
    assert "promoted" in row.inner_text()
    shot(page, "08-models-page")

    # The DAG list filtered by the model's tag lists the model's DAGs.
    page.goto(f"{base}/dags?tags=model%3Aflights")
    page.get_by_role("link", name="flights__continuous_training", exact=True).first.wait_for()
    shot(page, "09-dags-of-one-model")
