"""`accessd leader [abdicate] [--api URL] [--token T]`: who leads, or make the leader abdicate.

    accessd leader              # node1:8080
    accessd leader abdicate     # Leadership abdicted (another scheduler takes over)

A thin client of `GET`/`DELETE /v2/leader` (any API node answers), for a ZooKeeper-backed,
highly available accessd.
"""

from __future__ import annotations

import argparse
import os
import sys

import requests

DEFAULT_API = "http://127.0.0.1:8080"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="accessd leader", description=__doc__.split("\n")[0])
    p.add_argument("action", nargs="?", choices=["show", "abdicate"], default="show")
    p.add_argument("--api", default=os.environ.get("ACCESSD_API") or DEFAULT_API)
    p.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"))
    p.add_argument("--cacert", default=os.environ.get("ACCESSD_CACERT") or None,
                   help="certificate an https API must present (env ACCESSD_CACERT)")
    opts = p.parse_args(argv)
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    method = "DELETE" if opts.action == "abdicate" else "GET"
    try:
        r = requests.request(method, opts.api.rstrip("/") + "/v2/leader", headers=headers,
                             timeout=15, verify=opts.cacert or True)
    except requests.RequestException as exc:
        print(f"accessd leader: cannot reach the API at {opts.api}: {exc}", file=sys.stderr)
        return 1
    try:
        body = r.json()
    except ValueError:
        body = {"message": r.text.strip()}
    if r.status_code != 200:
        print(f"accessd leader: {r.status_code} {body.get('message', '')}", file=sys.stderr)
        return 1
    print(body.get("leader") or body.get("message"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
