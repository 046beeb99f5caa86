"""Reading a history from a Prometheus server through prometheus-api-client.

What a production tool needs from the connection, and nothing more: range
queries cut into chunks the server accepts, retries with exponential backoff
on the failures worth retrying (connection refused, 429/5xx), a timeout on
every request, bearer-token or basic auth read from the environment or a
file, TLS verification on unless explicitly turned off, and an optional CA
bundle. Every failure becomes one `ExternalError` (exit code 3) that says
what went wrong and what to try; credentials never appear in a message or a
log line, even if a server were to echo them back.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from sim.calibrate.source import GridSeries, RangeQuery, Selector
from sim.calibrate.window import SERVER_MAX_POINTS, Grid
from sim.errors import ExternalError, InputError

log = logging.getLogger(__name__)

TOKEN_ENV = "CAPSIM_PROMETHEUS_TOKEN"
USER_ENV = "CAPSIM_PROMETHEUS_USER"
PASSWORD_ENV = "CAPSIM_PROMETHEUS_PASSWORD"
RETRY_STATUSES = (429, 500, 502, 503, 504)
# How far back the scrape-interval probe looks: enough for a few samples at any sane interval.
PROBE_RANGE_S = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the server; built from CLI options, never printed whole."""

    url: str
    timeout_s: float = 30.0
    retries: int = 3
    backoff_s: float = 0.5
    ca_file: Path | None = None
    verify_tls: bool = True
    token_file: Path | None = None
    basic_auth_file: Path | None = None
    max_points: int = SERVER_MAX_POINTS


@dataclass(frozen=True)
class _Credentials:
    headers: dict[str, str]
    auth: tuple[str, str] | None
    secrets: tuple[str, ...]


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"cannot read the {what}: {exc.strerror}", file=path) from None
    if not text:
        raise InputError(f"the {what} is empty", file=path)
    return text


def _credentials(
    settings: ConnectionSettings, url_user: str | None, url_password: str | None
) -> _Credentials:
    """Bearer token (file, then env) or basic auth (file, URL, then env); at most one kind."""
    token = os.environ.get(TOKEN_ENV) or None
    if settings.token_file is not None:
        token = _read_secret(settings.token_file, "token file")
    user, password = url_user, url_password
    if settings.basic_auth_file is not None:
        line = _read_secret(settings.basic_auth_file, "basic-auth file")
        if ":" not in line:
            raise InputError("the basic-auth file must hold user:password", file=settings.basic_auth_file)
        user, password = line.split(":", 1)
    elif user is None and os.environ.get(USER_ENV):
        user, password = os.environ[USER_ENV], os.environ.get(PASSWORD_ENV, "")
    if token and user is not None:
        raise InputError(
            "both a bearer token and basic-auth credentials are set",
            field="--token-file/--basic-auth-file",
            valid=f"one of them ({TOKEN_ENV}, or {USER_ENV}/{PASSWORD_ENV})",
        )
    if token:
        return _Credentials({"Authorization": f"Bearer {token}"}, None, (token,))
    if user is not None:
        return _Credentials({}, (user, password or ""), tuple(s for s in (password,) if s))
    return _Credentials({}, None, ())


class PrometheusSource:
    """A Prometheus server as a `Source`."""

    def __init__(self, settings: ConnectionSettings) -> None:
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(
                f"not an http(s) URL: {_strip_userinfo(settings.url)!r}",
                field="--prometheus",
                valid="http://host:9090 or https://host/prometheus",
            )
        if settings.ca_file is not None and not settings.ca_file.is_file():
            raise InputError(f"CA file {settings.ca_file} does not exist", field="--ca-file")
        self.settings = settings
        self._creds = _credentials(settings, parts.username, parts.password)
        self.url = _strip_userinfo(settings.url).rstrip("/")
        session = requests.Session()
        session.verify = str(settings.ca_file) if settings.ca_file else settings.verify_tls
        retry = Retry(
            total=settings.retries,
            connect=settings.retries,
            read=settings.retries,
            status=settings.retries,
            backoff_factor=settings.backoff_s,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        self._prom = PrometheusConnect(
            url=self.url,
            headers=self._creds.headers,
            auth=self._creds.auth,
            retry=retry,
            session=session,
            timeout=settings.timeout_s,
            method="GET",
        )

    @property
    def description(self) -> str:
        return f"Prometheus {self.url}"

    def extent(self) -> tuple[float, float] | None:
        return None

    # ------------------------------------------------------------------ queries

    def series(self, selectors: Sequence[Selector], start_s: float, end_s: float) -> list[dict[str, str]]:
        match = [s.promql() for s in selectors]
        found: list[dict[str, str]] = self._call(
            "series look-up " + " or ".join(match),
            lambda: self._prom.get_series(_dt(start_s), _dt(end_s), params={"match[]": match}),
        )
        return found

    def scrape_interval_s(self, selector: Selector, start_s: float, end_s: float) -> float | None:
        """Raw samples of the last minutes of the window (a range-vector instant query), median spacing."""
        span = min(PROBE_RANGE_S, end_s - start_s)
        for at in (end_s, start_s + span, 0.5 * (start_s + end_s)):
            query = f"{selector.promql()}[{int(span)}s]"
            result: list[dict[str, Any]] = self._call(
                query, functools.partial(self._prom.custom_query, query, params={"time": at})
            )
            diffs = [
                np.diff(np.array([float(p[0]) for p in r["values"]])) for r in result if len(r["values"]) > 1
            ]
            if diffs:
                return float(np.median(np.concatenate(diffs)))
        return None

    def range(self, query: RangeQuery, grid: Grid) -> list[GridSeries]:
        promql = query.promql()
        merged: dict[tuple[tuple[str, str], ...], GridSeries] = {}
        for lo, hi in grid.chunks(self.settings.max_points):
            started = time.perf_counter()
            result: list[dict[str, Any]] = self._call(
                promql,
                functools.partial(
                    self._prom.custom_query_range, promql, _dt(lo), _dt(hi), step=f"{grid.step_s:g}s"
                ),
            )
            log.debug(
                "range query %s [%s, %s]: %d series in %.2f s",
                promql,
                lo,
                hi,
                len(result),
                time.perf_counter() - started,
            )
            for r in result:
                labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
                key = tuple(sorted(labels.items()))
                out = merged.get(key)
                if out is None:
                    out = GridSeries(
                        labels, np.full(grid.n_points, np.nan), np.zeros(grid.n_points, dtype=bool)
                    )
                    merged[key] = out
                pts = r["values"]
                idx = grid.index_of(np.array([float(p[0]) for p in pts]))
                vals = np.array([float(p[1]) for p in pts])
                ok = idx >= 0
                out.values[idx[ok]] = vals[ok]
                out.present[idx[ok]] = True
        return list(merged.values())

    # ------------------------------------------------------------------ errors

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except requests.exceptions.SSLError as exc:
            raise ExternalError(
                self._redact(
                    f"TLS handshake with {self.url} failed: {_reason(exc)}; pass the server's CA with "
                    "--ca-file (or, for a throwaway test server only, --insecure-skip-tls-verify)"
                )
            ) from None
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            if not _timed_out(exc):
                raise ExternalError(
                    self._redact(
                        f"cannot connect to {self.url}: {_reason(exc)}; "
                        "is the server up and the address right?"
                    )
                ) from None
            raise ExternalError(
                f"{self.url} did not answer within {self.settings.timeout_s:g} s "
                f"(after {self.settings.retries} retries) for: {what}; raise --timeout or shorten the window"
            ) from None
        except requests.exceptions.RetryError as exc:
            raise ExternalError(
                self._redact(f"{self.url} kept failing after {self.settings.retries} retries: {_reason(exc)}")
            ) from None
        except PrometheusApiClientException as exc:
            raise ExternalError(self._http_error(str(exc), what)) from None
        except (ValueError, KeyError) as exc:
            raise ExternalError(
                f"{self.url} did not answer like a Prometheus HTTP API ({type(exc).__name__}) for: {what}"
            ) from None

    def _http_error(self, text: str, what: str) -> str:
        match = re.match(r"HTTP Status Code (\d+) \((.*)\)$", text, re.DOTALL)
        code = int(match.group(1)) if match else 0
        body = match.group(2) if match else text
        detail = _api_error(body)
        if code == 401:
            message = (
                f"{self.url} refused the credentials (401 Unauthorized); check {TOKEN_ENV} / --token-file "
                f"or {USER_ENV} / --basic-auth-file"
            )
        elif code == 403:
            message = f"{self.url} denied access (403 Forbidden): the credentials lack permission to query"
        elif code in (400, 422):
            message = f"Prometheus rejected the query ({code}): {detail}\n  query: {what}"
        elif code == 503:
            message = f"{self.url} is unavailable (503) after {self.settings.retries} retries: {detail}"
        else:
            message = f"{self.url} answered HTTP {code or '?'}: {detail}\n  query: {what}"
        return self._redact(message)

    def _redact(self, text: str) -> str:
        for secret in self._creds.secrets:
            text = text.replace(secret, "***")
        return text


def _dt(t_s: float) -> datetime:
    return datetime.fromtimestamp(t_s, UTC)


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _timed_out(exc: BaseException) -> bool:
    """Whether a request timed out (requests reports read timeouts under retries as connection errors)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return False  # a refused connection (urllib3 files it under connect timeouts)
        if isinstance(seen, requests.exceptions.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
            return True
        nxt = getattr(seen, "reason", None)
        if not isinstance(nxt, BaseException) and getattr(seen, "args", None):
            nxt = seen.args[0] if isinstance(seen.args[0], BaseException) else None
        seen = nxt
    return False


def _reason(exc: BaseException) -> str:
    """The innermost cause, without the request URL and query string that wrappers repeat."""
    inner: Any = exc
    while True:
        nxt = getattr(inner, "reason", None) or (inner.args[0] if getattr(inner, "args", None) else None)
        if isinstance(nxt, BaseException) and nxt is not inner:
            inner = nxt
            continue
        break
    text = str(inner)
    return re.sub(r"\(Caused by .*", "", text).strip() or type(inner).__name__


def _api_error(body: str) -> str:
    """The `error` field of a Prometheus API error body, else a short excerpt."""
    text = body
    if text.startswith(("b'", 'b"')):
        text = text[2:-1].encode().decode("unicode_escape", errors="replace")
    try:
        data = json.loads(text)
        return f"{data.get('errorType', 'error')}: {data.get('error', '')}"
    except (ValueError, AttributeError):
        return text[:300]
