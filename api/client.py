"""The control API's HTTP client for the operator commands (`accessd apps|jobs|logs …`).

`ApiClient` sends `Authorization: Bearer <token>` when given one and turns every failure into a
`CliError` with the API's own `message` and `details` (never a traceback); a refused connection
is one line naming the URL. `client_options()` is the parent parser of the options every command
shares: `--api URL` (env `ACCESSD_API`), `--token` (env `ACCESSD_API_TOKEN`), `--cacert FILE`
(env `ACCESSD_CACERT`: the CA or self-signed certificate an `https://` API is verified against;
without it the system's trusted CAs; verification is never turned off), `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import requests

DEFAULT_API = "http://127.0.0.1:8080"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

# --------------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------------

class CliError(Exception):
    """A failure to report to the operator as-is (one message, maybe detail lines), exit 1."""

    def __init__(self, message: str, details: list[str] | None = None, *,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []
        # Transient: the API could not be reached or answered 5xx; a follow (--wait, events)
        # may retry, a one-shot command reports it.
        self.transient = transient


class ApiError(CliError):
    """The API answered with an error status; carries its `message` and `details`."""

    def __init__(self, status: int, reason: str, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else None
        if not message:
            message = (body if isinstance(body, str) and body.strip() else reason) or "error"
            # A proxy's or server's HTML error page: its first line of text is enough.
            message = str(message).strip().splitlines()[0][:200]
        lines = format_details(body.get("details") if isinstance(body, dict) else None)
        blocking = body.get("deployments") if isinstance(body, dict) else None
        if status == 409 and blocking:
            ids = ", ".join(str(d.get("id")) for d in blocking if isinstance(d, dict))
            lines.append(f"running deployment(s): {ids}; wait for them, or pass --force to "
                         "override")
        if status == 401:
            lines.append("the API needs a token: pass --token or set ACCESSD_API_TOKEN")
        elif status == 403:
            lines.append("the token is not allowed to do this (a read-only token cannot write)")
        super().__init__(f"{method} {path}: {status} {reason}: {str(message).strip()}", lines,
                         transient=status >= 500)


def format_details(details: Any) -> list[str]:
    """Marathon's `details` as readable lines: `[{"path", "errors": [..]}]` → `/cpus: ...`."""
    if not details:
        return []
    if isinstance(details, list):
        lines = []
        for d in details:
            if isinstance(d, dict) and "path" in d:
                errors = d.get("errors") or []
                text = "; ".join(str(e) for e in errors) if isinstance(errors, list) else errors
                lines.append(f"{d['path']}: {text}")
            else:
                lines.append(d if isinstance(d, str) else json.dumps(d, sort_keys=True))
        return lines
    return [details if isinstance(details, str) else json.dumps(details, sort_keys=True)]


class ApiClient:
    """Requests against one API base URL; every failure becomes a `CliError`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0,
                 cacert: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = cacert or True
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "accessd-cli"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, body: Any = None,
                params: dict[str, Any] | None = None, ok_404: bool = False) -> Any:
        """JSON of the answer (None for an empty body, or for 404 when `ok_404`)."""
        url = self.base_url + path
        try:
            resp = self.session.request(method, url, json=body, params=params,
                                        timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            raise tls_error(self.base_url, exc) from None
        except requests.ConnectionError as exc:
            raise connection_error(self.base_url, exc) from None
        except requests.Timeout:
            raise CliError(f"the API at {self.base_url} did not answer within "
                           f"{self.timeout:g}s", transient=True) from None
        except requests.RequestException as exc:
            raise CliError(f"request to the API at {self.base_url} failed: {exc}",
                           transient=True) from None
        if ok_404 and resp.status_code == 404:
            return None
        parsed = parse_body(resp)
        if resp.status_code >= 400:
            raise ApiError(resp.status_code, resp.reason or "", parsed, method, path)
        return parsed

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, params=with_extras(kw.pop("params", None)), **kw)

    def stream(self, path: str, params: dict[str, Any] | None = None,
               last_event_id: str | None = None) -> requests.Response:
        """An open streaming GET (the SSE event stream); the caller closes it."""
        url = self.base_url + path
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            # No read timeout: the stream is idle between events by design.
            resp = self.session.get(url, params=with_extras(params), stream=True, headers=headers,
                                    timeout=(self.timeout, None))
        except requests.exceptions.SSLError as exc:
            raise tls_error(self.base_url, exc) from None
        except requests.ConnectionError as exc:
            raise connection_error(self.base_url, exc) from None
        except requests.RequestException as exc:
            raise CliError(f"request to the API at {self.base_url} failed: {exc}",
                           transient=True) from None
        if resp.status_code >= 400:
            body = parse_body(resp)
            resp.close()
            raise ApiError(resp.status_code, resp.reason or "", body, "GET", path)
        return resp


def with_extras(params: dict[str, Any] | None) -> dict[str, Any]:
    """`params` plus `embed=accessd`: the CLI shows accessd's own fields (status label, task
    health verdict, deployment progress), which answers carry only when asked for."""
    out = dict(params or {})
    embed = out.get("embed")
    values = [] if embed is None else [embed] if isinstance(embed, str) else list(embed)
    out["embed"] = [*values, "accessd"]
    return out


def parse_body(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text


def tls_error(base_url: str, exc: Exception) -> CliError:
    """A TLS failure: most often a certificate the client does not trust (self-signed, or
    signed by a private CA); never retried, never bypassed."""
    text = str(exc)
    why = ("its certificate is not trusted" if "CERTIFICATE_VERIFY_FAILED" in text
           or "certificate" in text.lower() else "the TLS handshake failed")
    return CliError(f"cannot reach the accessd API at {base_url} securely ({why}); pass the "
                    "CA or the server's certificate with --cacert FILE or ACCESSD_CACERT")


def connection_error(base_url: str, exc: Exception) -> CliError:
    text = str(exc)
    if "refused" in text.lower():
        why = "connection refused"
    elif "Name or service not known" in text or "resolve" in text.lower():
        why = "unknown host"
    else:
        why = "connection failed"
    return CliError(f"cannot reach the accessd API at {base_url} ({why}); is it running? "
                    "(--api URL or ACCESSD_API)", transient=True)


def app_path(app_id: str) -> str:
    """`/v2/apps/<id>` with the id's slashes kept as path segments (Marathon's URL form)."""
    return "/v2/apps/" + normalize_id(app_id).lstrip("/")


def normalize_id(app_id: str) -> str:
    app_id = app_id.strip()
    return app_id if app_id.startswith("/") else "/" + app_id



def client_options() -> argparse.ArgumentParser:
    """The options every operator command takes, as a parent parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api", default=os.environ.get("ACCESSD_API") or DEFAULT_API,
                        help="control API base URL (env ACCESSD_API; default %(default)s)")
    common.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                        help="API token (env ACCESSD_API_TOKEN)")
    common.add_argument("--cacert", default=os.environ.get("ACCESSD_CACERT") or None,
                        metavar="FILE", help="certificate (CA or self-signed) that an https "
                                             "API must present (env ACCESSD_CACERT)")
    common.add_argument("--json", action="store_true", help="print the API's raw JSON")
    return common
