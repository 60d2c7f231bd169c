"""The emulator's endpoints: METI API v1 and v2 routes, an OAuth2 token endpoint standing in
for the v2 Auth0 tenant, and the ``/_emulator/`` admin routes.

Each endpoint turns a :class:`Request` into a :class:`Response`; the transport (sockets,
keep-alive, injected faults) lives in ``server.py``.

Longer than most modules on purpose: every endpoint of the double and its route tables sit
here, so a reader can check the whole emulated API surface against METI_API.md in one place.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

from airflow_provider_meti.emulator.faults import ADMIN_PREFIX, FaultPlan
from airflow_provider_meti.emulator.ledger import SourceFilter
from airflow_provider_meti.emulator.rejections import CollectionRejected
from airflow_provider_meti.emulator.state import EmulatorState
from airflow_provider_meti.exceptions import MetiValidationError
from airflow_provider_meti.timestamps import parse_timestamp

TOKEN_EXPIRED = "Token has expired. Please reauthenticate."
SOURCE_NOT_FOUND = "Source not found."
INVALID_FEATURES = (
    "One or more features in the FeatureCollection are invalid or missing required fields"
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
UNDOCUMENTED_FILTERS = ("alt_id", "conflict", "created_since", "updated_since")
"""Listing filters the emulator offers beyond METI's docs; ignored when ``documented_only``."""
OAUTH_TOKEN_PATH = "/oauth/token"
OAUTH_SCOPE = "read:sources write:sources delete:sources"
ACCOUNT_CLAIM = "account_id"
_NOT_JSON = object()


@dataclass(frozen=True)
class Request:
    """What a handler needs of one HTTP request."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        """The last value of a query parameter, or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer ...`` header, or None."""
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def json(self) -> Any:
        """The parsed body, or ``_NOT_JSON`` when it is empty or malformed."""
        try:
            return json.loads(self.body)
        except ValueError:  # also covers bad UTF-8
            return _NOT_JSON

    def form_or_json(self) -> Any:
        """A form-encoded body as a dict (OAuth2 allows it), else :meth:`json`."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self.json()
        try:
            return dict(parse_qsl(self.body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            return _NOT_JSON


@dataclass(frozen=True)
class Response:
    """Status, JSON body and extra headers of one answer."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=())


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A response whose body is ``payload`` as JSON."""
    return Response(status, json.dumps(payload).encode(), headers)


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    """METI's error shape: ``{"status": code, "message": text}``."""
    return json_response(status, {"status": status, "message": message}, headers)


def oauth_error_response(status: int, error: str, description: str) -> Response:
    """Auth0's error shape: ``{"error": code, "error_description": text}``."""
    return json_response(status, {"error": error, "error_description": description})


def handle(state: EmulatorState, request: Request) -> Response:
    """Route one request to its endpoint."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return _dispatch(_ADMIN_ROUTES.get(path[len(ADMIN_PREFIX) :]), state, request)
    if path == "/token":
        return _dispatch({"POST": _issue_token}, state, request)
    if path == OAUTH_TOKEN_PATH:
        return _dispatch({"POST": _issue_oauth_token}, state, request)
    if path in ("/sources", "/sources/"):
        return _dispatch(_SOURCES_ROUTES, state, request)
    if path.startswith("/sources/") and "/" not in path[len("/sources/") :]:
        return _dispatch(_SOURCE_BY_PATH_ROUTES, state, request)
    return error_response(404, f"Not found: {path}")


Endpoint = Callable[[EmulatorState, Request], Response]
AccountEndpoint = Callable[[EmulatorState, Request, str], Response]
"""An endpoint that also receives the caller's account id."""


def _dispatch(
    routes: Mapping[str, Endpoint] | None, state: EmulatorState, request: Request
) -> Response:
    if routes is None:
        return error_response(404, f"Not found: {request.path}")
    endpoint = routes.get(request.method)
    if endpoint is None:
        allowed = ", ".join(sorted(routes))
        return error_response(405, f"Method {request.method} not allowed.", (("Allow", allowed),))
    return endpoint(state, request)


def _authenticated(endpoint: AccountEndpoint) -> Endpoint:
    """Refuse requests without a valid token; hand the token's account to ``endpoint``."""

    def guarded(state: EmulatorState, request: Request) -> Response:
        token = request.bearer_token()
        account_id = None if token is None else state.tokens.account_of(token)
        if account_id is None:
            return error_response(401, TOKEN_EXPIRED)
        return endpoint(state, request, account_id)

    guarded.__name__ = endpoint.__name__
    return guarded


# --- /token --------------------------------------------------------------------------------


def _issue_token(state: EmulatorState, request: Request) -> Response:
    state.counters.token_requested()
    body = request.json()
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object with email and password.")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        return error_response(400, "Request body must include email and password.")
    account_id = state.users.account_of(email, password)
    if account_id is None:
        return error_response(401, "Invalid email or password.")
    token = state.tokens.issue(account_id)
    state.counters.token_issued()
    return json_response(200, {"token": token, "expires_in": _expires_in(state)})


def _expires_in(state: EmulatorState) -> float:
    ttl = state.tokens.ttl
    return int(ttl) if float(ttl).is_integer() else ttl


# --- /oauth/token (the v2 Auth0 tenant) ------------------------------------------------------

_OAUTH_FIELDS = ("grant_type", "client_id", "client_secret", "audience")


def _issue_oauth_token(state: EmulatorState, request: Request) -> Response:
    state.counters.token_requested()
    body = request.form_or_json()
    if not isinstance(body, dict):
        return oauth_error_response(
            400, "invalid_request", "Request body must be a JSON object or form-encoded."
        )
    for name in _OAUTH_FIELDS:
        if not isinstance(body.get(name), str) or not body[name]:
            return oauth_error_response(
                400, "invalid_request", f"Missing required parameter: {name}"
            )
    if body["grant_type"] != "client_credentials":
        return oauth_error_response(
            400, "unsupported_grant_type", f"Unsupported grant type: {body['grant_type']}"
        )
    account_id = state.clients.account_of(body["client_id"], body["client_secret"])
    if account_id is None:
        return oauth_error_response(401, "access_denied", "Unauthorized")
    if body["audience"] != state.audience:
        return oauth_error_response(403, "access_denied", f"Service not found: {body['audience']}")
    return _access_token(state, body["client_id"], body["audience"], account_id)


def _access_token(state: EmulatorState, client_id: str, audience: str, account_id: str) -> Response:
    issued_at = int(time.time())
    claims = {
        "iss": "meti-emulator",
        "sub": f"{client_id}@clients",
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + max(1, int(state.tokens.ttl)),
        "scope": OAUTH_SCOPE,
        "gty": "client-credentials",
        # Without it, two tokens asked for within one second would be the same string.
        "jti": secrets.token_urlsafe(16),
        ACCOUNT_CLAIM: account_id,
    }
    token = state.tokens.issue(account_id, claims)
    state.counters.token_issued()
    return json_response(
        200,
        {
            "access_token": token,
            "expires_in": _expires_in(state),
            "token_type": "Bearer",
            "scope": OAUTH_SCOPE,
        },
    )


# --- /sources ------------------------------------------------------------------------------


@_authenticated
def _get_sources(state: EmulatorState, request: Request, account_id: str) -> Response:
    if "id" in request.query:
        return _get_one(state, request.param("id") or "", account_id)
    return _list_sources(state, request, account_id)


@_authenticated
def _create_sources(state: EmulatorState, request: Request, account_id: str) -> Response:
    body = request.json()
    if body is _NOT_JSON:
        return error_response(
            400, "Request body is not valid JSON; expected a GeoJSON FeatureCollection."
        )
    try:
        created = state.ledger.create(body, account_id=account_id)
    except (MetiValidationError, CollectionRejected) as error:
        return _rejection(error)
    state.counters.sources_created(len(created))
    if len(created) == 1:
        return json_response(
            201, {"id": created[0]["id"], "message": "Source created successfully."}
        )
    return json_response(201, {"data": created, "message": "Sources created successfully."})


@_authenticated
def _delete_sources(state: EmulatorState, request: Request, account_id: str) -> Response:
    if "id" in request.query:
        return _delete_one(state, request.param("id") or "", account_id)
    alt_id = request.param("alt_id")
    if not alt_id:
        return error_response(400, "Pass the query parameter id (or alt_id) of what to delete.")
    count = state.ledger.delete_by_alt_id(alt_id, account_id=account_id)
    if count == 0:
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, {"message": "Sources deleted successfully.", "count": count})


@_authenticated
def _get_source_by_path(state: EmulatorState, request: Request, account_id: str) -> Response:
    return _get_one(state, _source_id_in_path(request), account_id)


@_authenticated
def _delete_source_by_path(state: EmulatorState, request: Request, account_id: str) -> Response:
    return _delete_one(state, _source_id_in_path(request), account_id)


def _source_id_in_path(request: Request) -> str:
    return unquote(request.path[len("/sources/") :])


def _get_one(state: EmulatorState, source_id: str, account_id: str) -> Response:
    if not source_id:
        return error_response(400, "The query parameter id must not be empty.")
    # Another account's source is as unknown to the caller as one that does not exist.
    source = state.ledger.get(source_id, account_id=account_id)
    if source is None:
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, source)


def _delete_one(state: EmulatorState, source_id: str, account_id: str) -> Response:
    if not source_id:
        return error_response(400, "The query parameter id must not be empty.")
    if not state.ledger.delete(source_id, account_id=account_id):
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, {"message": "Source deleted successfully."})


def _rejection(error: MetiValidationError | CollectionRejected) -> Response:
    collection_level = [problem for problem in error.problems if problem.index is None]
    if collection_level:
        return error_response(400, f"Invalid FeatureCollection: {collection_level[0]}")
    return error_response(422, f"{INVALID_FEATURES}: {error.problems[0]}")


def _list_sources(state: EmulatorState, request: Request, account_id: str) -> Response:
    try:
        limit = _integer_param(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        offset = _integer_param(request, "offset", 0, low=0, high=None)
        filters = _source_filter(request, account_id, state.documented_only)
    except ValueError as error:
        return error_response(400, str(error))
    page, total = state.ledger.page(filters, limit, offset)
    items = b"[" + b",".join(page) + b"]"
    key = state.list_envelope
    if key is None:
        body = items
    else:
        tail = f',"total":{total},"limit":{limit},"offset":{offset}}}'.encode()
        body = b'{"' + key.encode() + b'":' + items + tail
    return Response(200, body, (("X-Total-Count", str(total)),))


def _integer_param(request: Request, name: str, default: int, *, low: int, high: int | None) -> int:
    text = request.param(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be an integer {bounds} (got {text!r}).")
    return value


def _source_filter(request: Request, account_id: str, documented_only: bool) -> SourceFilter:
    if documented_only:
        # As the real service does with a parameter it does not know: ignore it.
        request = _without_params(request, UNDOCUMENTED_FILTERS)
    return SourceFilter(
        account_id=account_id,
        methodology=request.param("methodology"),
        steward_id=request.param("steward_id"),
        project_id=request.param("project_id"),
        outcome_reporting_year=request.param("outcome_reporting_year"),
        alt_id=request.param("alt_id"),
        conflict=_boolean_param(request, "conflict"),
        created_since=_timestamp_param(request, "created_since"),
        updated_since=_timestamp_param(request, "updated_since"),
    )


def _without_params(request: Request, names: tuple[str, ...]) -> Request:
    query = {key: values for key, values in request.query.items() if key not in names}
    return Request(request.method, request.path, query, request.headers, request.body)


def _boolean_param(request: Request, name: str) -> bool | None:
    text = request.param(name)
    if text is None or text == "":
        return None
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise ValueError(f"{name} must be true or false (got {text!r}).")


def _timestamp_param(request: Request, name: str) -> datetime | None:
    text = request.param(name)
    if text is None or text == "":
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 timestamp (got {text!r}).") from None


# --- /_emulator/ ---------------------------------------------------------------------------


def _configure_faults(state: EmulatorState, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object of fault settings.")
    try:
        plan = FaultPlan.from_config(body)
    except (TypeError, ValueError) as error:
        return error_response(400, f"Invalid fault settings: {error}")
    state.faults.configure(plan)
    return json_response(200, {"message": "Fault plan updated.", "faults": plan.as_dict()})


def _show_faults(state: EmulatorState, request: Request) -> Response:
    return json_response(200, state.faults.plan.as_dict())


def _expire_tokens(state: EmulatorState, request: Request) -> Response:
    expired = state.tokens.expire_all()
    return json_response(200, {"message": "All tokens expired.", "expired": expired})


def _show_stats(state: EmulatorState, request: Request) -> Response:
    return json_response(200, state.stats())


def _reset(state: EmulatorState, request: Request) -> Response:
    state.reset()
    return json_response(200, {"message": "Emulator reset."})


def _seed_sources(state: EmulatorState, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict) or "count" not in body:
        return error_response(400, 'Request body must be a JSON object such as {"count": 1000}.')
    before = state.ledger.count()
    try:
        total = state.ledger.seed(**body)
    except (TypeError, ValueError) as error:
        return error_response(400, f"Cannot seed sources: {error}")
    created = total - before
    state.counters.sources_created(created)
    message = f"{created} sources generated."
    return json_response(201, {"message": message, "created": created, "total": total})


_SOURCES_ROUTES: dict[str, Endpoint] = {
    "GET": _get_sources,
    "POST": _create_sources,
    "DELETE": _delete_sources,
}
_SOURCE_BY_PATH_ROUTES: dict[str, Endpoint] = {
    "GET": _get_source_by_path,
    "DELETE": _delete_source_by_path,
}
_ADMIN_ROUTES: dict[str, dict[str, Endpoint]] = {
    "faults": {"GET": _show_faults, "POST": _configure_faults},
    "expire-tokens": {"POST": _expire_tokens},
    "stats": {"GET": _show_stats},
    "reset": {"POST": _reset},
    "seed": {"POST": _seed_sources},
}
