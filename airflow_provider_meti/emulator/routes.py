"""The emulator's endpoints: METI API v1 routes plus the ``/_emulator/`` admin routes.

Each endpoint turns a :class:`Request` into a :class:`Response`; the transport (sockets,
keep-alive, injected faults) lives in ``server.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_meti.emulator.faults import ADMIN_PREFIX, FaultPlan
from airflow_provider_meti.emulator.ledger import SourceFilter
from airflow_provider_meti.emulator.state import EmulatorState
from airflow_provider_meti.exceptions import MetiValidationError
from airflow_provider_meti.geojson import parse_timestamp

TOKEN_EXPIRED = "Token has expired. Please reauthenticate."
SOURCE_NOT_FOUND = "Source not found."
INVALID_FEATURES = (
    "One or more features in the FeatureCollection are invalid or missing required fields"
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
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


def handle(state: EmulatorState, request: Request) -> Response:
    """Route one request to its endpoint."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return _dispatch(_ADMIN_ROUTES.get(path[len(ADMIN_PREFIX) :]), state, request)
    if path == "/token":
        return _dispatch({"POST": _issue_token}, state, request)
    if path in ("/sources", "/sources/"):
        return _dispatch(_SOURCES_ROUTES, state, request)
    if path.startswith("/sources/") and "/" not in path[len("/sources/") :]:
        return _dispatch(_SOURCE_BY_PATH_ROUTES, state, request)
    return error_response(404, f"Not found: {path}")


Endpoint = Callable[[EmulatorState, Request], Response]


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


def _authenticated(endpoint: Endpoint) -> Endpoint:
    def guarded(state: EmulatorState, request: Request) -> Response:
        token = request.bearer_token()
        if token is None or not state.tokens.is_valid(token):
            return error_response(401, TOKEN_EXPIRED)
        return endpoint(state, request)

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
    if not state.users.check(email, password):
        return error_response(401, "Invalid email or password.")
    token = state.tokens.issue()
    state.counters.token_issued()
    ttl = state.tokens.ttl
    expires_in = int(ttl) if float(ttl).is_integer() else ttl
    return json_response(200, {"token": token, "expires_in": expires_in})


# --- /sources ------------------------------------------------------------------------------


@_authenticated
def _get_sources(state: EmulatorState, request: Request) -> Response:
    if "id" in request.query:
        return _get_one(state, request.param("id") or "")
    return _list_sources(state, request)


@_authenticated
def _create_sources(state: EmulatorState, request: Request) -> Response:
    body = request.json()
    if body is _NOT_JSON:
        return error_response(
            400, "Request body is not valid JSON; expected a GeoJSON FeatureCollection."
        )
    try:
        created = state.ledger.create(body)
    except MetiValidationError as error:
        return _rejection(error)
    state.counters.sources_created(len(created))
    if len(created) == 1:
        return json_response(
            201, {"id": created[0]["id"], "message": "Source created successfully."}
        )
    return json_response(201, {"data": created, "message": "Sources created successfully."})


@_authenticated
def _delete_sources(state: EmulatorState, request: Request) -> Response:
    if "id" in request.query:
        return _delete_one(state, request.param("id") or "")
    alt_id = request.param("alt_id")
    if not alt_id:
        return error_response(400, "Pass the query parameter id (or alt_id) of what to delete.")
    count = state.ledger.delete_by_alt_id(alt_id)
    if count == 0:
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, {"message": "Sources deleted successfully.", "count": count})


@_authenticated
def _get_source_by_path(state: EmulatorState, request: Request) -> Response:
    return _get_one(state, request.path[len("/sources/") :])


@_authenticated
def _delete_source_by_path(state: EmulatorState, request: Request) -> Response:
    return _delete_one(state, request.path[len("/sources/") :])


def _get_one(state: EmulatorState, source_id: str) -> Response:
    if not source_id:
        return error_response(400, "The query parameter id must not be empty.")
    source = state.ledger.get(source_id)
    if source is None:
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, source)


def _delete_one(state: EmulatorState, source_id: str) -> Response:
    if not source_id:
        return error_response(400, "The query parameter id must not be empty.")
    if not state.ledger.delete(source_id):
        return error_response(404, SOURCE_NOT_FOUND)
    return json_response(200, {"message": "Source deleted successfully."})


def _rejection(error: MetiValidationError) -> Response:
    collection_level = [problem for problem in error.problems if problem.index is None]
    if collection_level:
        return error_response(400, f"Invalid FeatureCollection: {collection_level[0]}")
    return error_response(422, f"{INVALID_FEATURES}: {error.problems[0]}")


def _list_sources(state: EmulatorState, request: Request) -> Response:
    try:
        limit = _integer_param(request, "limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
        offset = _integer_param(request, "offset", 0, low=0, high=None)
        filters = _source_filter(request)
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


def _source_filter(request: Request) -> SourceFilter:
    return SourceFilter(
        methodology=request.param("methodology"),
        steward_id=request.param("steward_id"),
        project_id=request.param("project_id"),
        outcome_reporting_year=request.param("outcome_reporting_year"),
        alt_id=request.param("alt_id"),
        conflict=_boolean_param(request, "conflict"),
        created_since=_timestamp_param(request, "created_since"),
        updated_since=_timestamp_param(request, "updated_since"),
    )


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
