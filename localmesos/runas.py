"""`python -m localmesos.runas USER -- ARGV...`: become USER (its groups, gid, uid, HOME and
USER), then exec ARGV. The agent starts commands with a `CommandInfo.user` through this, as a
Mesos agent switches user before it execs a task's command (see localmesos/fetcher.py)."""

from __future__ import annotations

import os
import pwd
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m localmesos.runas USER -- ARGV...", file=sys.stderr)
        return 2
    user, command = argv[0], argv[2:]
    try:
        pw = pwd.getpwnam(user)
        os.initgroups(user, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    except (KeyError, OSError) as exc:
        print(f"Failed to switch to user '{user}': {exc}", file=sys.stderr)
        return 1
    os.environ["USER"] = user
    os.environ["HOME"] = pw.pw_dir
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"Failed to execute '{command[0]}': {exc}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
