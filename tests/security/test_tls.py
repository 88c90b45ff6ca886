"""The control API over TLS, end to end: `accessd api --certfile --keyfile` (gunicorn) serves
HTTPS with a certificate made here by `openssl`, and the CLI verifies it: with the certificate
given (`--cacert` or `ACCESSD_CACERT`) commands work, reads and writes; without it, or with
another certificate, they refuse in one line (exit 1, no traceback) and nothing is sent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import PYTHON, REPO, Proc, assert_no_traceback, free_port, wait_until

TOKEN = "tls-token-Planted-5e2d"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl missing (tools/test-deps.sh installs it)")


def make_cert(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN) and its key."""
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(work, "server")
    other, _ = make_cert(work, "other")
    port = free_port()
    proc = Proc([PYTHON, "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--state", str(work / "state.db"),
                 "--certfile", str(cert), "--keyfile", str(key)],
                env={"ACCESSD_API_TOKEN": TOKEN}, cwd=REPO)
    base = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.popen.poll() is None, proc.output()
        try:
            return requests.get(base + "/ping", verify=str(cert), timeout=2).text == "pong"
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, timeout=60, message="the TLS API to answer /ping")
        yield base, cert, other, work
    finally:
        proc.stop()
    assert_no_traceback([proc])
    assert TOKEN not in proc.full_output()


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("ACCESSD_CACERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    full_env.update({"ACCESSD_API_TOKEN": TOKEN, **(env or {})})
    return subprocess.run([PYTHON, "-m", "accessd.cli", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_https_only(tls_api):
    base, cert, _, _ = tls_api
    r = requests.get(base + "/v2/info", verify=str(cert), timeout=10,
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    with pytest.raises(requests.ConnectionError):  # plain HTTP on the TLS port gets nowhere
        requests.get(base.replace("https:", "http:") + "/v2/info", timeout=5)


def test_cli_verifies_the_certificate_it_is_given(tls_api):
    base, cert, _, work = tls_api
    app = work / "app.json"
    app.write_text(json.dumps({"id": "/tls/app", "cmd": "sleep 100", "cpus": 0.1, "mem": 16,
                               "instances": 0}))
    r = cli("deploy", str(app), "--api", base, "--cacert", str(cert))
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("apps", "list", "--api", base, env={"ACCESSD_CACERT": str(cert)})
    assert r.returncode == 0 and "/tls/app" in r.stdout, r.stdout + r.stderr
    r = cli("leader", "--api", base, "--cacert", str(cert))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("which", ["none", "other"])
def test_cli_refuses_an_unknown_certificate(tls_api, which):
    base, _, other, work = tls_api
    extra = ("--cacert", str(other)) if which == "other" else ()
    app = work / f"refused-{which}.json"
    app.write_text(json.dumps({"id": f"/tls/{which}", "cmd": "sleep 100", "cpus": 0.1,
                               "mem": 16, "instances": 0}))
    r = cli("deploy", str(app), "--api", base, *extra)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "certificate is not trusted" in r.stderr and "--cacert" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    ok = requests.get(base + "/v2/apps", verify=str(tls_api[1]), timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert f"/tls/{which}" not in [a["id"] for a in ok["apps"]]
