"""Screenshots of the status page's views in headless Chromium (for notes and reviews).

    python tools/screenshots.py http://127.0.0.1:8080 OUTDIR [--token T]

Against a running `accessd local` (or any API): the applications list, an app's detail with its
actions and a task's log view, the create-from-JSON dialog showing a refused field, and the
pipeline panel. Changes nothing (the create dialog is submitted with an invalid definition),
except with `--deployment`: it then creates `/demo/held` (its health check never passes, so its
deployment stays at its last step), takes its page, and deletes it again.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("api")
    p.add_argument("out", type=Path)
    p.add_argument("--token")
    p.add_argument("--app", default="/jpm/prediction")
    p.add_argument("--deployment", action="store_true")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 820})
        if args.token:
            page.add_init_script(
                f"sessionStorage.setItem('accessd.apiToken', {json.dumps(args.token)});")
        page.goto(args.api + "/")
        expect(page.locator("tr.app-row").first).to_be_visible(timeout=20_000)
        page.screenshot(path=str(args.out / "status-list.png"))

        page.goto(f"{args.api}/#/apps{args.app}")
        page.locator("tr.task-row button.task-logs").first.click(timeout=20_000)
        expect(page.locator("#task-log-text")).not_to_be_empty(timeout=20_000)
        page.screenshot(path=str(args.out / "status-detail-actions-logs.png"), full_page=True)

        page.goto(args.api + "/#/")
        page.locator("button.action-create").click(timeout=20_000)
        page.locator("#app-json").fill(json.dumps(
            {"id": "/demo/bad", "cmd": "sleep 1", "cpus": -1, "mem": 32}, indent=2))
        page.locator("#app-json-submit").click()
        expect(page.locator("#app-json-errors li.field-error").first).to_be_visible()
        page.screenshot(path=str(args.out / "status-create-field-error.png"))
        page.keyboard.press("Escape")

        if args.deployment:
            import requests

            headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
            requests.post(args.api + "/v2/apps", headers=headers, timeout=10, json={
                "id": "/demo/held", "cmd": "exec sleep 600", "cpus": 0.05, "mem": 16,
                "instances": 2, "healthChecks": [{"protocol": "COMMAND",
                                                  "command": {"value": "false"},
                                                  "gracePeriodSeconds": 600}]}).raise_for_status()
            try:
                page.goto(args.api + "/#/apps/demo/held")
                expect(page.locator(".step-progress")).to_contain_text("2 running",
                                                                       timeout=20_000)
                page.screenshot(path=str(args.out / "status-deployment-steps.png"))
            finally:
                requests.delete(args.api + "/v2/apps/demo/held", params={"force": "true"},
                                headers=headers, timeout=10)

        page.goto(args.api + "/#/pipeline")
        expect(page.locator(".pipeline-card").first).to_be_visible(timeout=20_000)
        page.screenshot(path=str(args.out / "status-pipeline.png"), full_page=True)
        browser.close()
    for f in sorted(args.out.glob("status-*.png")):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
