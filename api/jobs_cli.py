"""`accessd jobs list | add FILE | run NAME | history NAME | kill NAME | delete NAME`: a thin
client of the Chronos API (`/v1/scheduler`) on the control API.

Shares `api.client`'s client, options (`--api`, `--token`, `--json`), error reporting and exit
codes (0 ok, 1 failure, 2 usage). `add FILE` takes one job or a list of jobs (a Chronos
export) and posts each to `/iso8601` or `/dependency`, parents before their children.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import quote

from api.cli import Parser, UsageError
from api.cli_format import print_json, table
from api.client import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ApiClient, CliError, client_options

V1 = "/v1/scheduler"


def _name(name: str) -> str:
    return quote(name, safe="")


def _when(iso: str | None) -> str:
    return (iso or "-").replace("T", " ").replace(".000Z", "Z") if iso else "-"


def _last(run: dict[str, Any]) -> str:
    if not run:
        return "-"
    return f"{run.get('state', '-')} {_when(run.get('finishedAt') or run.get('scheduledAt'))}"


def cmd_list(client: ApiClient, opts: argparse.Namespace) -> int:
    jobs = client.get(V1 + "/jobs", params={"status": "true"})
    if opts.json:
        print_json(jobs)
        return EXIT_OK
    rows = []
    for j in jobs:
        st = j.get("accessdStatus") or {}
        last = st.get("lastRun") or {}
        rows.append([j["name"], j.get("schedule") or "after " + ",".join(j.get("parents", [])),
                     "disabled" if j.get("disabled") else st.get("state", "-"),
                     _last(last), _when(st.get("nextRunAt")),
                     f"{j['successCount']}/{j['errorCount']}",
                     f"{st.get('medianMs', 0) / 1000:.1f}s/{st.get('p95Ms', 0) / 1000:.1f}s"])
    print(table(["NAME", "SCHEDULE", "STATE", "LAST RUN", "NEXT RUN", "OK/ERR", "P50/P95"],
                rows))
    return EXIT_OK


def _ordered(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parents before children (the file's order otherwise)."""
    names = {j.get("name") for j in jobs}
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    pending = list(jobs)
    while pending:
        ready = [j for j in pending
                 if all(p in done or p not in names for p in j.get("parents") or [])]
        if not ready:  # a cycle: let the API name it
            ready = pending[:1]
        for j in ready:
            out.append(j)
            done.add(j.get("name"))
            pending.remove(j)
    return out


def cmd_add(client: ApiClient, opts: argparse.Namespace) -> int:
    try:
        with open(opts.file, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise CliError(f"cannot read {opts.file}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliError(f"{opts.file} is not JSON: {exc}") from None
    jobs = doc if isinstance(doc, list) else [doc]
    for job in _ordered(jobs):
        if not isinstance(job, dict):
            raise CliError(f"{opts.file}: a job must be a JSON object")
        kind = "dependency" if job.get("parents") else "iso8601"
        client.request("POST", f"{V1}/{kind}", body=job)
        when = ("after " + ", ".join(job["parents"]) if kind == "dependency"
                else job.get("schedule"))
        print(f"job {job.get('name')} added ({when})")
    return EXIT_OK


def cmd_run(client: ApiClient, opts: argparse.Namespace) -> int:
    client.request("PUT", f"{V1}/job/{_name(opts.name)}")
    print(f"job {opts.name}: run requested")
    return EXIT_OK


def cmd_kill(client: ApiClient, opts: argparse.Namespace) -> int:
    client.request("DELETE", f"{V1}/task/kill/{_name(opts.name)}")
    print(f"job {opts.name}: kill of its active runs requested")
    return EXIT_OK


def cmd_delete(client: ApiClient, opts: argparse.Namespace) -> int:
    client.request("DELETE", f"{V1}/job/{_name(opts.name)}")
    print(f"job {opts.name} deleted")
    return EXIT_OK


def cmd_history(client: ApiClient, opts: argparse.Namespace) -> int:
    stat = client.get(f"{V1}/job/stat/{_name(opts.name)}", params={"runs": "true"})
    if opts.json:
        print_json(stat)
        return EXIT_OK
    rows = []
    for r in stat.get("runs", [])[:opts.limit]:
        rows.append([_when(r.get("scheduledAt")), r.get("attempt", 0), r.get("state"),
                     "-" if r.get("exitCode") is None else r["exitCode"],
                     _when(r.get("startedAt")), _when(r.get("finishedAt")),
                     r.get("host") or "-",
                     r.get("message") or "" if r.get("state") != "succeeded" else ""])
    print(table(["SCHEDULED", "TRY", "STATE", "EXIT", "STARTED", "ENDED", "AGENT", "MESSAGE"],
                rows))
    h = stat.get("histogram") or {}
    print(f"\n{h.get('count', 0)} successful runs kept: median {h.get('median', 0) / 1000:.2f}s, "
          f"p95 {h.get('95thPercentile', 0) / 1000:.2f}s, "
          f"p99 {h.get('99thPercentile', 0) / 1000:.2f}s")
    return EXIT_OK


def build_parser() -> Parser:
    common = client_options()
    parser = Parser(prog="accessd jobs", description="Chronos-style jobs on accessd.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("list", help="list jobs", parents=[common]).set_defaults(func=cmd_list)
    add = sub.add_parser("add", help="add or replace jobs from a JSON file (one or a list)",
                         parents=[common])
    add.add_argument("file", metavar="FILE.json")
    add.set_defaults(func=cmd_add)
    for name, func, summary in (("run", cmd_run, "run a job now"),
                                ("kill", cmd_kill, "kill a job's active runs"),
                                ("delete", cmd_delete, "delete a job")):
        p = sub.add_parser(name, help=summary, parents=[common])
        p.add_argument("name", metavar="NAME")
        p.set_defaults(func=func)
    history = sub.add_parser("history", help="a job's runs, newest first", parents=[common])
    history.add_argument("name", metavar="NAME")
    history.add_argument("--limit", type=int, default=20, help="runs shown (default 20)")
    history.set_defaults(func=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        return int(opts.func(ApiClient(opts.api, opts.token, cacert=opts.cacert), opts))
    except CliError as exc:
        print(f"accessd jobs {opts.command}: {exc.message}", file=sys.stderr)
        for line in exc.details:
            print(f"  {line}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
