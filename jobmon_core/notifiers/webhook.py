"""A webhook notifier: POST the alerts as JSON when a job's alert level flips.

    from jobmon_core.notifiers.webhook import WebhookNotifier
    from jobmon_core.plugins import get_plugin_manager

    get_plugin_manager().register(WebhookNotifier("https://hooks.example.com/jobmon"))

or ``jobmon check --notify --webhook-url URL`` (or ``JOBMON_WEBHOOK_URL``). It posts only
when a check has changes (OK -> CRITICAL, CRITICAL -> OK...), never on every check, so a
check run every minute does not send a message every minute. Standard library HTTP only:
a notifier should not add a dependency to every pipeline that logs with pg-jobmon.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ..alerts import Alert, worst
from ..errors import InvalidArgumentError, JobmonError
from ..plugins import AlertChange, hookimpl

ENV_VAR = "JOBMON_WEBHOOK_URL"
SOURCE = "pg-jobmon"


class NotifierError(JobmonError):
    """A notification could not be delivered (the endpoint is unreachable or refused it)."""


def shown_url(url: str) -> str:
    """``url`` without its ``user:password@`` part, query and fragment, for messages and
    logs (a query often carries a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, _host(parts), parts.path, "", ""))


def _host(parts: SplitResult) -> str:
    """The ``host[:port]`` of a URL, without userinfo (IPv6 brackets kept)."""
    return parts.netloc.rpartition("@")[2]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would turn the POST into a GET without a body (and report
    success), and send the ``Authorization`` header to whatever host it is sent to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookNotifier:
    """A plugin that POSTs ``{"source", "schema", "worst_code", "alerts", "changes"}`` to
    ``url`` when a check has changes.

    ``alerts`` are :meth:`Alert.to_dict` of every row of the check, ``changes`` the
    :meth:`AlertChange.to_dict` of each flip, ``worst_code`` the highest alert code. A
    ``user:password@`` in the URL is sent as HTTP Basic authentication and appears in no
    message. ``headers`` are added to the request (an ``Authorization`` token, say).
    A failure raises :class:`NotifierError`, which the plugin caller logs as a warning.
    """

    def __init__(
        self, url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        parts = _parse(url)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise InvalidArgumentError("timeout must be a number of seconds")
        if not (math.isfinite(timeout) and timeout > 0):
            raise InvalidArgumentError("timeout must be a positive number of seconds")
        self.headers = {"Content-Type": "application/json", **_checked_headers(headers)}
        if parts.username is not None:
            # urllib sends no userinfo: turn user:password@ into Basic auth, off the URL
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        self.url = urlunsplit((parts.scheme, _host(parts), parts.path or "/", parts.query, ""))
        self.timeout = float(timeout)
        self._opener = urllib.request.build_opener(_NoRedirects)

    def __repr__(self) -> str:
        return f"WebhookNotifier({shown_url(self.url)!r})"

    @classmethod
    def from_env(cls, **kwargs: Any) -> WebhookNotifier | None:
        """A notifier for ``$JOBMON_WEBHOOK_URL``; None when it is unset or empty.
        ``kwargs`` (``timeout``, ``headers``) go to the constructor."""
        url = os.environ.get(ENV_VAR)
        return cls(url, **kwargs) if url else None

    @hookimpl
    def jobmon_alerts_found(
        self, alerts: list[Alert], changes: list[AlertChange], schema: str
    ) -> None:
        """POST the check when it has changes; raise :class:`NotifierError` if that fails."""
        if changes:
            self.post(self.payload(alerts, changes, schema))

    @staticmethod
    def payload(alerts: list[Alert], changes: list[AlertChange], schema: str) -> dict[str, Any]:
        """The JSON document posted for a check."""
        return {
            "source": SOURCE,
            "schema": schema,
            "worst_code": worst(alerts),
            "alerts": [a.to_dict() for a in alerts],
            "changes": [c.to_dict() for c in changes],
        }

    def post(self, document: dict[str, Any]) -> None:
        """POST ``document`` as JSON; any answer but 2xx is a :class:`NotifierError`."""
        body = json.dumps(document).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        where = shown_url(self.url)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise NotifierError(f"webhook {where} answered HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise NotifierError(f"webhook {where} unreachable: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            raise NotifierError(f"webhook {where} unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise NotifierError(f"webhook {where} answered HTTP {status}")


def _parse(url: object) -> SplitResult:
    if not isinstance(url, str):
        raise InvalidArgumentError(f"the webhook URL must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        raise InvalidArgumentError(f"the webhook URL is not valid: {shown_url(url)!r}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidArgumentError(
            f"the webhook URL must be an http:// or https:// URL, not {shown_url(url)!r}"
        )
    if not parts.hostname:
        raise InvalidArgumentError(f"the webhook URL has no host: {shown_url(url)!r}")
    if any(c.isspace() or ord(c) < 32 for c in url.strip()):
        raise InvalidArgumentError(f"the webhook URL contains whitespace: {shown_url(url)!r}")
    return parts


def _checked_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise InvalidArgumentError("headers must be a dict of str to str")
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgumentError("headers must be a dict of str to str")
        if not key or any(c in key for c in ":\r\n") or any(c in value for c in "\r\n\0"):
            raise InvalidArgumentError(f"header {key!r} has a name or value HTTP cannot send")
    return dict(headers)
