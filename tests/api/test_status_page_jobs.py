"""The status page's Jobs view (#/jobs) in a real headless Chromium against a real API and
store: jobs added through the Chronos API, runs and counters written as the scheduler writes
them; the view shows schedule or parents, state, last run, next run, counts and durations, and
follows changes live (no reload)."""

from __future__ import annotations

import time

import pytest
import requests
from playwright.sync_api import expect

from scheduler.jobs.plan import iso
from tests.api.test_status_page import LIVE, browser, env, page  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(120)


def run_doc(job, n, state, secs, t):
    return {"id": f"ct:{n}:0:{job}:", "job": job, "state": state, "active": state == "running",
            "attempt": 0, "scheduledAt": iso(t), "startedAt": iso(t),
            "finishedAt": None if state == "running" else iso(t + secs), "host": "agent1"}


def test_jobs_view_lists_jobs_and_follows_runs_live(env, page):  # noqa: F811
    store, api = env
    r = requests.post(f"{api}/v1/scheduler/iso8601", json={
        "name": "ingest-jpm", "command": "true", "schedule": "R/2030-01-01T00:00:00Z/PT30S",
        "scheduleTimeZone": "Europe/Berlin"}, timeout=10)
    assert r.status_code == 204, r.text
    r = requests.post(f"{api}/v1/scheduler/dependency", json={
        "name": "retrain-jpm", "command": "true", "parents": ["ingest-jpm"]}, timeout=10)
    assert r.status_code == 204, r.text
    t = time.time() - 60
    store.record_jobs(runs=[run_doc("ingest-jpm", i, "succeeded", s, t + i)
                            for i, s in enumerate([1, 2, 3, 4])],
                      statuses=[{"name": "ingest-jpm", "successCount": 4, "errorCount": 0,
                                 "lastSuccess": iso(t + 7)}])

    page.goto(api + "/#/jobs")
    ingest = page.locator('tr.job-row[data-job="ingest-jpm"]')
    retrain = page.locator('tr.job-row[data-job="retrain-jpm"]')
    expect(ingest.locator(".job-when")).to_have_text(
        "R/2030-01-01T00:00:00Z/PT30S (Europe/Berlin)", timeout=LIVE)
    expect(retrain.locator(".job-when")).to_have_text("after ingest-jpm")
    expect(ingest.locator(".job-counts")).to_have_text("4 / 0")
    expect(ingest.locator(".job-median")).to_have_text("2.50 s")   # durations 1,2,3,4 s
    expect(ingest.locator(".job-last")).to_contain_text("succeeded")
    expect(ingest.locator(".job-next")).not_to_have_text("-")
    expect(retrain.locator(".job-last")).to_have_text("never")
    expect(page.locator("#list-view")).to_be_hidden()

    # the scheduler starts the child, then it fails: the view follows without a reload
    store.record_jobs(runs=[run_doc("retrain-jpm", 9, "running", 0, time.time())])
    expect(retrain.locator(".job-state")).to_have_text("running", timeout=LIVE)
    store.record_jobs(runs=[dict(run_doc("retrain-jpm", 9, "failed", 2, time.time()),
                                 active=False)],
                      statuses=[{"name": "retrain-jpm", "successCount": 0, "errorCount": 1,
                                 "lastError": iso(time.time())}])
    expect(retrain.locator(".job-counts")).to_have_text("0 / 1", timeout=LIVE)
    expect(retrain.locator(".job-last")).to_contain_text("failed")
    expect(retrain.locator(".job-state")).to_have_text("idle")

    # back to the applications
    page.click('header nav a[href="#/"]')
    expect(page.locator("#jobs-view")).to_be_hidden()
    expect(page.locator("#list-view")).to_be_visible()
