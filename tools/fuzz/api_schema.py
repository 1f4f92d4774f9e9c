"""Schemathesis against the callback app's own OpenAPI schema (`/api/openapi.json`, for operators): every operation,
data that fits the schema and data that does not, sent with the right `X-Api-Key` and admin bearer
(most cases, so they get past authentication) or with what Schemathesis generated for them.

Checks per case: Schemathesis' not_a_server_error, response_schema_conformance and
content_type_conformance (except GET /metrics, Prometheus text the schema cannot describe); and
ours: a status the operation may answer, and a JSON body with `error` and `message` on errors.
Status-code conformance is not checked: FastAPI's schema lists only 2xx and 422, while docs/protocol.md §3
and the operator API document 401, 404, 409 and 413 too.

Talkdesk operations are aimed at the fuzzer's sacrificial conversations or at unknown ids, never at
a bystander's Talkdesk id; the operator's read-only GET of one conversation may read a bystander."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tools.fuzz.known import body_bug, operator_bug, url_bug, webhook_bug
from tools.fuzz.report import PhaseStats, Violations

TALKDESK_STATUSES = frozenset({202, 401, 404, 409, 413, 422})  # docs/protocol.md §3
OPERATOR_STATUSES = frozenset({200, 401, 404, 413, 422})
RIGHT_AUTH_IN_TEN = 9  # cases in ten sent with the right credentials


@dataclass(frozen=True)
class SchemaTargets:
    open_id: str  # Talkdesk id of the sacrificial conversation that is never closed
    closable_id: str  # Talkdesk id of the one closes go to
    conversation_ids: list[str]  # our ids of conversations the operator GET may read (bystanders included)


def load_schema(http_url: str, admin_token: str) -> Any:
    import schemathesis

    return schemathesis.openapi.from_url(f"{http_url}/api/openapi.json",
                                         headers={"Authorization": f"Bearer {admin_token}"})


def case_strategy(schema: Any, targets: SchemaTargets) -> st.SearchStrategy[tuple[Any, bool]]:
    """(case, send it with the right credentials?) over every operation, positive and negative."""
    from schemathesis import GenerationMode

    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        overrides: list[dict[str, Any] | None] = [None]
        if operation.path.startswith("/talkdesk/conversations/"):
            sacrificial = targets.closable_id if operation.path.endswith("/close") else targets.open_id
            overrides.append({"conversation_id": sacrificial})
        elif operation.path == "/api/conversations/{conversation_id}":
            overrides += [{"conversation_id": cid} for cid in targets.conversation_ids]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in overrides:
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    right_auth = st.sampled_from((True,) * RIGHT_AUTH_IN_TEN + (False,) * (10 - RIGHT_AUTH_IN_TEN))
    return st.tuples(st.one_of(strategies), right_auth)


class SchemaFuzzer:
    def __init__(self, http_url: str, api_key: str, admin_token: str, backend: str, stats: PhaseStats,
                 violations: Violations, skip_known_bugs: bool, replay: bool) -> None:
        from schemathesis.checks import not_a_server_error
        from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

        self.http_url, self.backend = http_url, backend
        self.auth = {"x-api-key": api_key, "authorization": f"Bearer {admin_token}"}
        self.stats, self.violations = stats, violations
        self.skip_known_bugs = skip_known_bugs
        self.replay = replay
        self.checks = [not_a_server_error, response_schema_conformance, content_type_conformance]
        self.checks_text = [not_a_server_error]  # /metrics answers Prometheus text, not JSON

    def _known_bug(self, case: Any, right_auth: bool) -> str | None:
        kwargs = case.as_transport_kwargs(base_url=self.http_url)
        data = kwargs.get("data")
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        body = data if isinstance(data, bytes) else None
        headers = {k.lower(): v for k, v in (kwargs.get("headers") or {}).items()}
        bug = body_bug(body, headers.get("content-type", "application/json"))
        bug = bug or url_bug(self.backend, *(case.path_parameters or {}).values(), *_strings(case.query))
        if bug is None and right_auth:
            if case.operation.path == "/talkdesk/webhook" and "json" in kwargs:
                bug = webhook_bug(kwargs["json"])
            bug = bug or operator_bug(case.query, kwargs.get("json"))
        return bug

    def run_one(self, case: Any, right_auth: bool) -> None:
        import requests

        label = case.operation.label
        if right_auth:
            case.headers = {**(case.headers or {}), **self.auth}
        if (not self.replay and case.operation.path == "/api/dead-letters/replay" and isinstance(case.body, dict)):
            # On a shared system (the test suite's) replaying dead letters would change other tests' data.
            case.body = {**case.body, "dry_run": True}
        bug = self._known_bug(case, right_auth)
        if bug and self.skip_known_bugs:
            self.stats.skipped_known += 1
            return
        try:
            response = case.call(base_url=self.http_url, timeout=10)
        except (UnicodeError, ValueError, requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL):
            self.stats.unsendable += 1  # requests refuses to put it on the wire (e.g. a header with a newline)
            return
        except requests.exceptions.RequestException as exc:
            self.stats.inputs += 1
            self.violations.add("schemathesis", f"connection failed: {type(exc).__name__}", str(exc)[:300],
                                _show(case, self.http_url), known=bug)
            return
        self.stats.inputs += 1
        self.stats.categories[label] += 1
        self.stats.outcomes[str(response.status_code)] += 1
        shown = _show(case, self.http_url)
        checks = self.checks_text if case.operation.path == "/metrics" else self.checks
        try:
            case.validate_response(response, checks=checks, headers=case.headers)
        except (AssertionError, BaseExceptionGroup) as exc:  # Schemathesis' Failure, or a group of them
            failures = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
            for failure in failures:
                title = getattr(failure, "title", type(failure).__name__)
                message = getattr(failure, "message", str(failure))
                self.violations.add("schemathesis", f"{title} ({label})", f"{response.status_code}: {message}",
                                    shown, known=bug)
        self._check_status(case, response, shown, bug)

    def _check_status(self, case: Any, response: Any, shown: str, bug: str | None) -> None:
        path, status = case.operation.path, response.status_code
        if path in ("/healthz", "/metrics", "/readyz"):
            allowed = frozenset({200, 401})
        elif path.startswith("/talkdesk/"):
            allowed = TALKDESK_STATUSES
        else:
            allowed = OPERATOR_STATUSES
        if status < 500 and status not in allowed:
            self.violations.add("schemathesis", f"{status} from {case.operation.label}",
                                f"allowed: {sorted(allowed)}; answer {response.text[:300]}", shown, known=bug)
        if (path == "/metrics" and status == 200) or status >= 500:
            return  # Prometheus text; or a server error, which not_a_server_error reported
        try:
            answer = response.json()
        except ValueError:
            self.violations.add("schemathesis", f"answer is not JSON ({case.operation.label})",
                                f"{status} {response.headers.get('content-type')}: {response.text[:200]}", shown,
                                known=bug)
            return
        if status >= 400 and not (isinstance(answer, dict) and isinstance(answer.get("error"), str)
                                  and isinstance(answer.get("message"), str)):
            self.violations.add("schemathesis", f"error answer without 'error' and 'message' ({case.operation.label})",
                                json.dumps(answer)[:300], shown, known=bug)


def _strings(query: Any) -> list[str]:
    """The string values of a query (Schemathesis may send lists of them)."""
    if not isinstance(query, dict):
        return []
    found: list[str] = []
    for value in query.values():
        found += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return found


def _show(case: Any, http_url: str, limit: int = 400) -> str:
    """The case as a curl command (secrets filtered by Schemathesis), cut to `limit`."""
    try:
        text = str(case.as_curl_command(base_url=http_url))
    except Exception:  # the curl rendering can fail on the same odd data as the request
        text = f"{case.operation.label} path={case.path_parameters} query={case.query} body={case.body!r}"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
