"""The values of Marathon secrets, resolved at launch: accessd's secrets "plugin".

`accessd scheduler --secrets-dir DIR` (env `ACCESSD_SECRETS_DIR`): a secret whose `source` is
`/db/password` has the contents of `DIR/db/password` (one trailing newline dropped). The value
goes only into the launched task's environment (TaskInfo), never into the state store, the API
or a log line. A source that leaves DIR, or a missing file, makes the task not launch: the
scheduler logs the app, the secret's name and why (never a value), and declines the offer.
"""

from __future__ import annotations

import os
from pathlib import Path

from scheduler.spec import AppSpec

_secrets_dir: Path | None = None


class SecretUnavailable(Exception):
    """A secret of the app cannot be resolved; the message names it (not its value)."""


def configure(directory: str | None) -> None:
    """Where sources are read from (None: secrets cannot be resolved)."""
    global _secrets_dir
    _secrets_dir = Path(directory).resolve() if directory else None


def secret_env(app: AppSpec) -> dict[str, str]:
    """`{variable: value}` for the app's env secret references; SecretUnavailable if one cannot
    be read."""
    out: dict[str, str] = {}
    for var, name in app.env_secrets.items():
        source = app.secrets[name]
        if _secrets_dir is None:
            raise SecretUnavailable(f"secret '{name}' (source {source}): no secrets directory "
                                    "(accessd scheduler --secrets-dir)")
        path = (_secrets_dir / source.lstrip("/")).resolve()
        if path != _secrets_dir and _secrets_dir not in path.parents:
            raise SecretUnavailable(f"secret '{name}': source {source} leaves the secrets "
                                    "directory")
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise SecretUnavailable(f"secret '{name}' (source {source}): {why}") from None
        out[var] = value[:-1] if value.endswith("\n") else value
    return out


configure(os.environ.get("ACCESSD_SECRETS_DIR"))
