"""The one app-definition schema (Marathon field names), shared by the API and the scheduler.

Invariants:
- `parse_app` is the only way to get an `AppSpec`; it validates everything and reports every
  problem at once as `SpecError.details = [{"path": "/cpus", "errors": ["must be > 0"]}, ...]`
  (JSON-pointer paths, Marathon's 422 shape). It never raises anything else for bad input.
- An `AppSpec` is immutable and hashable (tuples and `FrozenMap`s only).
- `to_json()` is Marathon JSON with every default filled in, and it is a fixed point:
  `parse_app(s.to_json()).to_json() == s.to_json()` and `parse_app(s.to_json()) == s`.
- `null` for an optional field means "use the default" (Marathon's readNullable behaviour).
- Times are ISO 8601 UTC with milliseconds and `Z`.

The schema is split by stage: `model` (dataclasses, `to_json`), `fields` (typed readers that
collect errors), `ids`, `times`, `healthchecks`, `marathon_fields` (the rest of Marathon's fields), `parse` (`parse_app`), `documents` (PATCH merge,
version stamping). Import from `scheduler.spec`; the submodules are its implementation.
"""

from scheduler.spec.documents import is_scale_only, json_copy, merge_patch, stamp_app
from scheduler.spec.ids import (
    app_id_to_task_prefix,
    new_task_id,
    normalize_app_id,
    task_id_to_app_id,
)
from scheduler.spec.model import (
    CONSTRAINT_OPERATORS,
    HEALTH_CHECK_PROTOCOLS,
    READ_ONLY_FIELDS,
    AppSpec,
    Constraint,
    FetchUri,
    FrozenMap,
    HealthCheck,
    PortDefinition,
    ReadinessCheck,
    SpecError,
    UnreachableStrategy,
    UpgradeStrategy,
)
from scheduler.spec.parse import UNSUPPORTED_FIELDS, parse_app
from scheduler.spec.times import format_time, iso_now, parse_time

__all__ = [
    "AppSpec", "Constraint", "FetchUri", "FrozenMap", "HealthCheck", "PortDefinition",
    "ReadinessCheck", "SpecError", "UnreachableStrategy", "UpgradeStrategy", "CONSTRAINT_OPERATORS", "HEALTH_CHECK_PROTOCOLS", "READ_ONLY_FIELDS",
    "UNSUPPORTED_FIELDS",
    "app_id_to_task_prefix", "format_time", "iso_now", "is_scale_only", "json_copy",
    "merge_patch",
    "new_task_id", "normalize_app_id", "parse_app", "parse_time", "stamp_app",
    "task_id_to_app_id",
]
