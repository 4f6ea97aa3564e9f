"""A webhook notifier: POST the alerts as JSON when a job's alert level flips.

    from jobmon_core.notifiers.webhook import WebhookNotifier
    get_plugin_manager().register(WebhookNotifier("https://hooks.example.com/jobmon"))

or ``jobmon check --notify --webhook-url URL`` (or ``JOBMON_WEBHOOK_URL``). It posts only on
state changes (OK -> CRITICAL, CRITICAL -> OK...), never on every check. Standard library
HTTP only.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit, urlunsplit

from ..alerts import Alert, worst
from ..errors import InvalidArgumentError, JobmonError
from ..plugins import AlertChange, hookimpl

ENV_VAR = "JOBMON_WEBHOOK_URL"


class NotifierError(JobmonError):
    """A notification could not be delivered."""


def shown_url(url: str) -> str:
    """The URL without any ``user:password@`` part, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class WebhookNotifier:
    """POSTs ``{"source", "schema", "worst_code", "alerts", "changes"}`` to ``url``."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise InvalidArgumentError("the webhook URL must be an http:// or https:// URL")
        if not urlsplit(url).hostname:
            raise InvalidArgumentError(f"the webhook URL has no host: {shown_url(url)!r}")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise InvalidArgumentError("timeout must be a positive number of seconds")
        parts = urlsplit(url)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if parts.username is not None:
            # urllib sends no userinfo: turn user:password@ into Basic auth, off the URL
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        self.url = shown_url(url) + (f"?{parts.query}" if parts.query else "")
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"WebhookNotifier({shown_url(self.url)!r})"

    @classmethod
    def from_env(cls) -> WebhookNotifier | None:
        url = os.environ.get(ENV_VAR)
        return cls(url) if url else None

    @hookimpl
    def jobmon_alerts_found(
        self, alerts: list[Alert], changes: list[AlertChange], schema: str
    ) -> None:
        if not changes:
            return
        body = json.dumps(
            {
                "source": "pg-jobmon",
                "schema": schema,
                "worst_code": worst(alerts),
                "alerts": [a.to_dict() for a in alerts],
                "changes": [c.to_dict() for c in changes],
            }
        ).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise NotifierError(f"webhook {shown_url(self.url)} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NotifierError(f"webhook {shown_url(self.url)} unreachable: {reason}") from None
        if not 200 <= status < 300:
            raise NotifierError(f"webhook {shown_url(self.url)} answered HTTP {status}")
