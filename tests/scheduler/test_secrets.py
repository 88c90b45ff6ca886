"""Marathon secrets: the definition holds references only; the scheduler resolves values from
its secrets directory into the TaskInfo it launches, and nowhere else."""

from __future__ import annotations

import base64
import json

import pytest

from scheduler import secret_values
from scheduler.placement import LaunchRequest, place
from scheduler.secret_values import SecretUnavailable, secret_env
from scheduler.spec import parse_app
from scheduler.tasks import build_task_info
from tests.scheduler.builders import make_offer

DOC = {"id": "/sec/app", "cmd": "sleep 10", "cpus": 0.1, "mem": 16, "portDefinitions": [],
       "env": {"PLAIN": "x", "DB_PASSWORD": {"secret": "db"}},
       "secrets": {"db": {"source": "/db/password"}, "unused": {"source": "/u"}}}


@pytest.fixture
def secrets_dir(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "password").write_text("hunter2-value\n")
    (tmp_path.parent / "outside").write_text("not yours")
    secret_values.configure(str(tmp_path))
    yield tmp_path
    secret_values.configure(None)


def test_references_round_trip_in_marathon_shape():
    app = parse_app(DOC)
    out = app.to_json()
    assert out["env"] == {"PLAIN": "x", "DB_PASSWORD": {"secret": "db"}}
    assert out["secrets"] == {"db": {"source": "/db/password"}, "unused": {"source": "/u"}}
    assert parse_app(out) == app
    assert "secrets" not in parse_app({"id": "/p", "cmd": "true"}).to_json()


def test_values_go_into_the_task_info_only(secrets_dir):
    app = parse_app(DOC)
    launch = place([make_offer()], [LaunchRequest(app, 1)], []).launches[0]
    info = build_task_info(launch, app, task_id="sec_app.1", config_version="v",
                           executor_python="python3")
    data = json.loads(base64.b64decode(info["data"]))
    assert data["env"]["DB_PASSWORD"] == "hunter2-value" and data["env"]["PLAIN"] == "x"
    assert "hunter2" not in json.dumps(app.to_json())
    cmd_app = parse_app({**DOC, "executor": "//cmd"})
    info = build_task_info(launch, cmd_app, task_id="sec_app.2", config_version="v",
                           executor_python="python3")
    assert {"name": "DB_PASSWORD", "value": "hunter2-value"} in \
        info["command"]["environment"]["variables"]


def test_unresolvable_secrets_name_the_secret_not_a_value(secrets_dir):
    missing = parse_app({**DOC, "secrets": {"db": {"source": "/db/nope"}}})
    with pytest.raises(SecretUnavailable, match="secret 'db' \\(source /db/nope\\)"):
        secret_env(missing)
    # ('..' in a source is refused by the schema already: test_spec); a symlink cannot leave:
    via_link = secrets_dir / "link"
    via_link.symlink_to(secrets_dir.parent / "outside")
    linked = parse_app({**DOC, "secrets": {"db": {"source": "/link"}}})
    with pytest.raises(SecretUnavailable, match="leaves the secrets directory"):
        secret_env(linked)
    secret_values.configure(None)
    with pytest.raises(SecretUnavailable, match="no secrets directory"):
        secret_env(parse_app(DOC))
