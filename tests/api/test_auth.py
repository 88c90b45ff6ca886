"""Credentials on a real gunicorn: none, bearer, basic (token as password), read-only; the
event stream with a read credential; and SIGTERM stopping the server promptly even with an
event-stream client connected."""

from __future__ import annotations

import time

import pytest
import requests

from tests.api.conftest import SseReader, snapshot
from tests.fixtures_api import start_api

TOKEN = "s3cret-write-token"
READ = "r3ad-only-token"
APP = {"id": "/auth/app", "cmd": "sleep 1000", "cpus": 0.1, "mem": 32, "instances": 1}


def start_auth_api(state_path):
    # The write token comes from the environment (kept out of the process list), the read
    # token from the command line: both ways work.
    return start_api(state_path, workers=2, extra_args=("--read-token", READ),
                     env={"ACCESSD_API_TOKEN": TOKEN, "ACCESSD_API_SSE_KEEPALIVE": "1"})


@pytest.fixture(scope="module")
def server(state_path, store):
    proc, base = start_auth_api(state_path)
    yield proc, base
    proc.stop()


@pytest.fixture(scope="module")
def api(server):
    return server[1]


def auth_app(api, store) -> None:
    """/auth/app exists (created with the write token if no test did so yet): each test that
    needs it runs alone too."""
    if store.get_app(APP["id"]) is None:
        r = requests.post(api + "/v2/apps", json=APP, headers=bearer(TOKEN), timeout=10)
        assert r.status_code == 201, r.text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_missing_or_wrong_credentials_are_401_with_challenge(api, store):
    before = snapshot(store)
    for headers in ({}, bearer("wrong"), {"Authorization": "Basic !!notbase64"},
                    {"Authorization": "Token " + TOKEN}):
        for send in (lambda h=headers: requests.get(api + "/v2/apps", headers=h, timeout=10),
                     lambda h=headers: requests.post(api + "/v2/apps", json=APP, headers=h,
                                                     timeout=10)):
            r = send()
            assert r.status_code == 401, (headers, r.text)
            challenge = r.headers["WWW-Authenticate"]
            assert "Bearer" in challenge and "Basic" in challenge
            assert r.json()["message"]
    r = requests.get(api + "/v2/apps", auth=("admin", "wrong"), timeout=10)
    assert r.status_code == 401
    assert snapshot(store) == before
    # Liveness and the status page's static files stay public.
    assert requests.get(api + "/ping", timeout=10).text == "pong"


def test_bearer_token_may_read_and_write(api, store):
    app = dict(APP, id="/auth/bearer")  # its own app: other tests may have made /auth/app
    r = requests.post(api + "/v2/apps", json=app, headers=bearer(TOKEN), timeout=10)
    assert r.status_code == 201, r.text
    assert store.get_app("/auth/bearer") is not None
    r = requests.get(api + "/v2/apps", headers=bearer(TOKEN), timeout=10)
    assert "/auth/bearer" in [a["id"] for a in r.json()["apps"]]


def test_basic_with_token_as_password(api, store):
    auth_app(api, store)
    r = requests.put(api + "/v2/apps/auth/app?force=true", json={"instances": 2},
                     auth=("anyone", TOKEN), timeout=10)
    assert r.status_code == 200, r.text
    assert store.get_app("/auth/app")["instances"] == 2


def test_read_token_may_read_but_not_write(api, store):
    auth_app(api, store)
    assert requests.get(api + "/v2/apps/auth/app", headers=bearer(READ),
                        timeout=10).status_code == 200
    assert requests.get(api + "/v2/info", auth=("viewer", READ), timeout=10).status_code == 200
    assert requests.get(api + "/metrics", headers=bearer(READ), timeout=10).status_code == 200
    before = snapshot(store)
    for send in (
        lambda: requests.put(api + "/v2/apps/auth/app", json={"instances": 5},
                             headers=bearer(READ), timeout=10),
        lambda: requests.delete(api + "/v2/apps/auth/app", auth=("viewer", READ), timeout=10),
        lambda: requests.post(api + "/v2/apps/auth/app/restart", headers=bearer(READ),
                              timeout=10),
        lambda: requests.post(api + "/v2/tasks/delete", json={"ids": []}, headers=bearer(READ),
                              timeout=10),
    ):
        r = send()
        assert r.status_code == 403, r.text
        assert "read-only" in r.json()["message"]
    assert snapshot(store) == before


def test_event_stream_with_read_credential_and_prompt_sigterm(api, state_path, store):
    auth_app(api, store)
    # A server of its own: this test stops it, and the module's others may run after it.
    proc, api = start_auth_api(state_path)
    reader = SseReader(api + "/v2/events", headers=bearer(READ))
    try:
        assert reader.status == 200
        r = requests.post(api + "/v2/apps/auth/app/restart?force=true", headers=bearer(TOKEN),
                          timeout=10)
        assert r.status_code == 200
        from tests.support import wait_until
        wait_until(lambda: reader.of_type("deployment_info"), 10, message="deployment_info")
        assert requests.get(api + "/v2/events", timeout=10, stream=True).status_code == 401
        # SIGTERM with a stream open: the stream ends and the server exits within seconds.
        started = time.monotonic()
        code = proc.stop(grace=15)
        assert time.monotonic() - started < 8, proc.output()
        assert code == 0, proc.output()
    finally:
        reader.close()
        proc.stop()
