"""Marathon's secrets: `"secrets": {"pw": {"source": "/db/password"}}` declares a secret, and an
`env` value `{"secret": "pw"}` puts its value in a variable.

Only references live in the definition: the values never pass through the API or the state
store, so no caller of the API, read-only or not, can read them (as in Marathon, whose secrets
plugin resolves them at launch). accessd's scheduler resolves a `source` at launch from its
secrets directory (`scheduler.secret_values`).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from scheduler.spec.fields import MISSING, Errors, ptr, type_name
from scheduler.spec.model import FrozenMap


def _bad_text(text: str) -> bool:
    return not text or any(unicodedata.category(c) == "Cc" for c in text)


def parse_secrets(raw: Any, errs: Errors) -> FrozenMap:
    """`{name: source}` from Marathon's `secrets` object."""
    if raw is MISSING or raw is None:
        return FrozenMap()
    if not isinstance(raw, dict):
        errs.add(ptr("secrets"), f"must be an object, got {type_name(raw)}")
        return FrozenMap()
    out: dict[str, str] = {}
    for name, decl in raw.items():
        path = ptr("secrets", name)
        if _bad_text(name):
            errs.add(path, "a secret's name must be non-empty, without control characters")
            continue
        source = decl.get("source") if isinstance(decl, dict) else None
        if not isinstance(decl, dict) or set(decl) - {"source"}:
            errs.add(path, 'must be {"source": "<path in the secret store>"}')
        elif not isinstance(source, str) or _bad_text(source):
            errs.add(ptr("secrets", name, "source"), "must be a non-empty string without "
                                                     "control characters")
        elif ".." in source.split("/"):
            errs.add(ptr("secrets", name, "source"), "'..' segments are not allowed")
        else:
            out[name] = source
    return FrozenMap(out)


def split_env(raw_env: Any, secrets: FrozenMap, errs: Errors) -> tuple[Any, FrozenMap]:
    """`raw_env` without its secret references, and `{variable: secret name}` for them; a
    reference to a secret not declared in `secrets` is an error."""
    if not isinstance(raw_env, dict):
        return raw_env, FrozenMap()
    plain: dict[str, Any] = {}
    refs: dict[str, str] = {}
    for var, val in raw_env.items():
        if not (isinstance(val, dict) and "secret" in val):
            plain[var] = val
            continue
        name = val["secret"]
        if set(val) != {"secret"} or not isinstance(name, str):
            errs.add(ptr("env", var), 'a secret reference must be {"secret": "<name>"}')
        elif name not in secrets:
            errs.add(ptr("env", var), f"references an undefined secret '{name}': declare it "
                                      f'in "secrets"')
        else:
            refs[var] = name
    return plain, FrozenMap(refs)
