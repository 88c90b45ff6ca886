"""An agent's files API, as a Mesos 1.12 agent serves it: `/files/browse`, `/files/read`,
`/files/download` (and `/files/debug`) over the paths the agent has attached.

Ground truth: `/work/shared/protocol/mesos-1.12/files_api.json` (copied to
`tests/data/mesos-1.12/files_api.json`). When an agent creates a sandbox it attaches three paths,
as a real agent does: the sandbox's real directory, the `runs/latest` form of it, and the virtual
`/frameworks/<fw>/executors/<executor>/runs/latest`. A path is served only if it lies under an
attached path (no `..` escapes, no symlinks out of the sandbox); attachments stay for the agent's life, so the logs of finished
tasks stay readable while their sandbox exists (localmesos never garbage-collects sandboxes).

Answers, as recorded:
- `browse?path=DIR` -> 200, a JSON list of `{gid, mode, mtime, nlink, path, size, uid}`, each
  `path` the requested path joined with the entry's name; an unknown path -> 404, empty body.
- `read?path=FILE&offset=N[&length=L]` -> 200 `{"data": ..., "offset": N}`; `offset=-1` gives
  the file's size as `offset` with empty data; an offset past the end gives empty data at that
  offset; a read is at most 16 pages (64 KiB), as Mesos caps it.
- `download?path=FILE` -> 200, the bytes, `Content-Disposition: attachment; filename=<name>`.
- Malformed queries -> 400 `text/plain` with Mesos's message; browsing a file -> `[]`; reading
  or downloading a directory -> 400; the `.json` forms -> 404 (`files_api_edges.json`, recorded
  for this module).
"""

from __future__ import annotations

import grp
import json
import mimetypes
import os
import posixpath
import pwd
import stat
import threading
from typing import Any

from localmesos.httpserver import Request, Response

# Mesos reads at most 16 pages per request (files.cpp); 4 KiB pages here.
MAX_READ = 16 * 4096


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def file_info(path: str, shown_as: str) -> dict[str, Any]:
    """One entry of a browse answer, for the real file `path` shown under `shown_as`."""
    st = os.stat(path)
    return {"gid": _group(st.st_gid), "mode": stat.filemode(st.st_mode),
            "mtime": float(int(st.st_mtime)), "nlink": st.st_nlink, "path": shown_as,
            "size": st.st_size, "uid": _owner(st.st_uid)}


def _int_param(req: Request, name: str) -> int | None | str:
    """The integer query parameter, None when absent, or Mesos's 400 message."""
    text = req.query.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return f"Failed to parse {name}: Failed to convert '{text}' to number"


class SandboxFiles:
    """The attached paths of one agent and the HTTP handler serving them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attached: dict[str, str] = {}

    def attach_sandbox(self, work_dir: str, agent_id: str, fid: str, eid: str,
                       directory: str) -> None:
        """A sandbox was created: attach it as a Mesos agent does (three names, one dir)."""
        runs = posixpath.join(work_dir, "slaves", agent_id, "frameworks", fid, "executors", eid,
                              "runs")
        with self._lock:
            self._attached[directory] = directory
            self._attached[posixpath.join(runs, "latest")] = directory
            self._attached[f"/frameworks/{fid}/executors/{eid}/runs/latest"] = directory

    def resolve(self, path: str) -> str | None:
        """The real path behind a requested one, or None if it is not under an attachment."""
        if not path.startswith("/") or "\x00" in path:
            return None  # no file name holds a NUL (the OS would refuse it with ValueError)
        norm = posixpath.normpath(path)
        if norm.startswith("//"):
            norm = "/" + norm.lstrip("/")
        with self._lock:
            attached = dict(self._attached)
        probe = norm
        while True:
            if probe in attached:
                root = attached[probe]
                rest = norm[len(probe):].lstrip("/")
                real = posixpath.join(root, rest) if rest else root
                # A symlink a task left in its sandbox must not open the machine's files.
                inside = os.path.realpath(real)
                base = os.path.realpath(root)
                return real if inside == base or inside.startswith(base + "/") else None
            if probe == "/":
                return None
            probe = posixpath.dirname(probe)

    def handle(self, req: Request) -> Response:
        name = req.path.rstrip("/").rsplit("/", 1)[-1]
        if req.method not in ("GET", "HEAD"):
            return Response.text(405, f"Expecting 'GET', received '{req.method}'")
        if name == "debug":
            with self._lock:
                return Response.json(200, dict(self._attached))
        handler = {"browse": self._browse, "read": self._read,
                   "download": self._download}.get(name)
        if handler is None:  # e.g. the `.json` forms, gone in Mesos 1.12
            return Response.text(404, "404 Not Found.")
        path = req.query.get("path")
        if not path:
            return Response.text(400, "Expecting 'path=value' in query.\n")
        return handler(req, path)

    def _browse(self, req: Request, path: str) -> Response:
        real = self.resolve(path)
        if real is None or not os.path.exists(real):
            return Response.text(404, "")
        shown = path.rstrip("/") or "/"
        if not os.path.isdir(real):
            return Response.json(200, [])  # a file is browsed as an empty directory, as recorded
        entries = []
        for entry in sorted(os.listdir(real)):
            try:
                entries.append(file_info(os.path.join(real, entry), posixpath.join(shown, entry)))
            except OSError:  # removed while listing
                continue
        return Response.json(200, entries)

    def _read(self, req: Request, path: str) -> Response:
        offset = _int_param(req, "offset")
        length = _int_param(req, "length")
        for value in (offset, length):
            if isinstance(value, str):
                return Response.text(400, value + ".\n")
        if offset is None:
            offset = -1
        if offset < -1:
            return Response.text(400, f"Negative offset provided: {offset}.\n")
        if length is not None and length < -1:
            return Response.text(400, f"Negative length provided: {length}.\n")
        real = self.resolve(path)
        if real is None or not os.path.exists(real):
            return Response.text(404, "")
        if os.path.isdir(real):
            return Response.text(400, "Cannot read a directory.\n")
        try:
            with open(real, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset == -1:
                    return _read_answer("", size)
                if offset >= size:
                    return _read_answer("", offset)
                wanted = MAX_READ if length in (None, -1) else min(length, MAX_READ)
                f.seek(offset)
                data = f.read(wanted)
        except OSError:
            return Response.text(404, "")
        return _read_answer(data.decode("utf-8", errors="replace"), offset)

    def _download(self, req: Request, path: str) -> Response:
        real = self.resolve(path)
        if real is None or not os.path.exists(real):
            return Response.text(404, "")
        if os.path.isdir(real):
            return Response.text(400, "Cannot download a directory.\n")
        try:
            with open(real, "rb") as f:
                body = f.read()
        except OSError:
            return Response.text(404, "")
        filename = posixpath.basename(path.rstrip("/"))
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return Response(200, body, ctype,
                        {"Content-Disposition": f"attachment; filename={filename}"})


def _read_answer(data: str, offset: int) -> Response:
    return Response(200, json.dumps({"data": data, "offset": offset}).encode("utf-8"),
                    "application/json")
