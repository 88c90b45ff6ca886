"""`accessd local --containers`: the access services as Docker containers (issue 22).

The definitions are `examples/apps/containers/*.json`: the same services as `examples/apps/`, in
the Python image (`accessd image build python`, built here first: minutes the first time on a
machine, then cached), with host networking and the data directory mounted at its own path, so
the SQLite store URL and the models directory mean the same inside and outside the container."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from accessd import image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "apps" / "containers"
DEPS = Path(__file__).resolve().parent.parent / "tools" / "docker-deps.sh"


def prepare(progress: Any) -> str:
    """dockerd running and the Python image built; returns its tag (raises RuntimeError)."""
    progress("checking Docker (tools/docker-deps.sh)")
    subprocess.run(["bash", str(DEPS)], check=False, capture_output=True, timeout=600)
    status = (DEPS.parent.parent / ".cache" / "docker-status")
    if status.exists() and status.read_text().startswith("unavailable"):
        raise RuntimeError(f"--containers needs Docker: {status.read_text().strip()}")
    progress("building the Python image if needed (first time on a machine: minutes)")
    try:
        return image.build(["python"])["python"]
    except image.BuildError as exc:
        raise RuntimeError(f"cannot build the Python image: {exc}") from exc


def app_definitions(store_url: str, models_dir: Path, data_dir: Path,
                    image_tag: str) -> list[dict[str, Any]]:
    values = {"@ACCESSD_STORE@": store_url, "@ACCESSD_MODELS_DIR@": str(models_dir),
              "@ACCESSD_DATA_DIR@": str(data_dir.resolve()), "@ACCESSD_IMAGE@": image_tag}
    apps = []
    for path in sorted(EXAMPLES.glob("*.json")):
        text = path.read_text()
        for key, value in values.items():
            text = text.replace(key, json.dumps(value)[1:-1])
        apps.append(json.loads(text))
    return apps
