"""The emulator's endpoints: METI API v1 and v2 routes (also under ``/sandbox``), an OAuth2
token endpoint standing in for the v2 Auth0 tenant, and the ``/_emulator/`` admin routes.

Each endpoint turns a :class:`Request` into a :class:`Response`; the transport (sockets,
keep-alive, injected faults, trickled bodies) lives in ``server.py``. A caller's token says
which API it speaks: an opaque token from ``/token`` is v1 (errors ``{"status", "message"}``),
a JWT from ``/oauth/token`` is v2 (FastAPI's ``{"detail": ...}``, scopes, list replies).

Longer than most modules on purpose: every endpoint of the double and its route tables sit
here, so a reader can check the whole emulated API surface against METI_API.md in one place.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from airflow_provider_meti.emulator.create_request import (
    RequestInvalid,
    error_item,
    parse_create_request,
)
from airflow_provider_meti.emulator.credentials import ALL_SCOPES, Grant
from airflow_provider_meti.emulator.faults import ADMIN_PREFIX, FaultPlan
from airflow_provider_meti.emulator.ledger import Ledger, SourceFilter
from airflow_provider_meti.emulator.rejections import CollectionRejected
from airflow_provider_meti.emulator.reply_shapes import (
    encoded_2024,
    has_every_response_field,
    shape_2024,
    source_response,
)
from airflow_provider_meti.emulator.state import EmulatorState

TOKEN_EXPIRED = "Token has expired. Please reauthenticate."
SOURCE_NOT_FOUND = "Source not found."
INVALID_FEATURES = (
    "One or more features in the FeatureCollection are invalid or missing required fields"
)
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
UNDOCUMENTED_FILTERS = ("alt_id", "conflict", "created_since", "updated_since")
"""v1 listing filters the emulator offers beyond METI's docs; ignored when ``documented_only``."""
UNDOCUMENTED_FILTERS_V2 = ("conflict", "created_since", "updated_since")
"""The same for v2, whose docs list ``id``, ``alt_id`` and the descriptive fields."""
OAUTH_TOKEN_PATH = "/oauth/token"
OAUTH_SCOPE = " ".join(ALL_SCOPES)
ACCOUNT_CLAIM = "account_id"
CLAIM_NAMESPACE = "https://api.meti.millpont.com/"
"""Prefix of the namespaced claims METI's tokens carry (``.../account_id``, ``.../role``)."""
SANDBOX_PREFIX = "/sandbox"
REQUIRED_SCOPES = {"GET": "read:sources", "POST": "write:sources", "DELETE": "delete:sources"}
# docs leave open: the text of a 401 on v2; METI's error page says "invalid or expired token".
V2_INVALID_TOKEN = "Invalid or expired token"
V2_SOURCE_NOT_FOUND = "Source not found"
_NOT_JSON = object()
Headers = tuple[tuple[str, str], ...]


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
        # docs leave open: a repeated parameter; FastAPI reads the last one of a scalar.
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
    """Status, body, extra headers and content type of one answer."""

    status: int
    body: bytes
    headers: Headers = field(default=())
    content_type: str = "application/json"


def json_response(status: int, payload: Any, headers: Headers = ()) -> Response:
    """A response whose body is ``payload`` as JSON."""
    return Response(status, json.dumps(payload).encode(), headers)


def error_response(status: int, message: str, headers: Headers = ()) -> Response:
    """METI v1's error shape: ``{"status": code, "message": text}``."""
    return json_response(status, {"status": status, "message": message}, headers)


def detail_response(status: int, detail: Any, headers: Headers = ()) -> Response:
    """METI v2's (FastAPI's) error shape: ``{"detail": text}`` or ``{"detail": [items]}``."""
    return json_response(status, {"detail": detail}, headers)


def oauth_error_response(status: int, error: str, description: str) -> Response:
    """Auth0's error shape: ``{"error": code, "error_description": text}``."""
    return json_response(status, {"error": error, "error_description": description})


def handle(state: EmulatorState, request: Request) -> Response:
    """Route one request to its endpoint."""
    path = request.path
    if path.startswith(ADMIN_PREFIX):
        return _dispatch_admin(_ADMIN_ROUTES.get(path[len(ADMIN_PREFIX) :]), state, request)
    if path == "/token":
        return _dispatch_admin({"POST": _issue_token}, state, request)
    if path == OAUTH_TOKEN_PATH:
        return _dispatch_admin({"POST": _issue_oauth_token}, state, request)
    sandbox = path.startswith(SANDBOX_PREFIX + "/")
    if sandbox:
        path = path[len(SANDBOX_PREFIX) :]
    if path in ("/sources", "/sources/"):
        return _dispatch(_SOURCES_ROUTES, _call(state, request, sandbox, None))
    if path.startswith("/sources/") and "/" not in path[len("/sources/") :]:
        source_id = unquote(path[len("/sources/") :])
        return _dispatch(_SOURCE_BY_PATH_ROUTES, _call(state, request, sandbox, source_id))
    if _call(state, request, sandbox, None).v2:
        return detail_response(404, "Not Found")  # FastAPI's answer for an unknown route
    return error_response(404, f"Not found: {request.path}")


# --- who is calling, in which dialect ---------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One request to a source route, with what its token says about the caller.

    :param grant: the token's grant, or None when it is missing, unknown or expired
    :param v2: whether to answer in v2's dialect (the token is v2's, or looks like a JWT)
    :param sandbox: whether the path lies under ``/sandbox``
    :param source_id: the id in the path (``/sources/{id}``), if any
    """

    state: EmulatorState
    request: Request
    grant: Grant | None
    v2: bool
    sandbox: bool
    source_id: str | None

    @property
    def ledger(self) -> Ledger:
        return self.state.ledger_for(self.sandbox)

    @property
    def account_id(self) -> str:
        assert self.grant is not None
        return self.grant.account_id

    def error(self, status: int, message: str, headers: Headers = ()) -> Response:
        """An error in the caller's dialect."""
        if self.v2:
            return detail_response(status, message, headers)
        return error_response(status, message, headers)


def _call(state: EmulatorState, request: Request, sandbox: bool, source_id: str | None) -> Call:
    token = request.bearer_token()
    # account_of is the one validity check of every route (tests hook it to revoke tokens);
    # the grant then adds the token's API generation and scopes.
    valid = token is not None and state.tokens.account_of(token) is not None
    grant = state.tokens.grant_of(token) if valid and token is not None else None
    if grant is not None:
        v2 = grant.api_version == 2
    else:
        # docs leave open: how a server serving both generations tells which one an unknown
        # token meant; v2 tokens are JWTs (three dot-separated parts), v1 tokens are not.
        v2 = token is not None and token.count(".") == 2
    return Call(state, request, grant, v2, sandbox, source_id)


Endpoint = Callable[[Call], Response]
AdminEndpoint = Callable[[EmulatorState, Request], Response]


def _dispatch(routes: Mapping[str, Endpoint], call: Call) -> Response:
    endpoint = routes.get(call.request.method)
    if endpoint is None:
        allowed = (("Allow", ", ".join(sorted(routes))),)
        if call.v2:
            return detail_response(405, "Method Not Allowed", allowed)
        return error_response(405, f"Method {call.request.method} not allowed.", allowed)
    if call.grant is None:
        if call.v2:
            # docs leave open: the v2 401's headers; FastAPI's HTTPBearer sends this one.
            return detail_response(401, V2_INVALID_TOKEN, (("WWW-Authenticate", "Bearer"),))
        return error_response(401, TOKEN_EXPIRED)
    if call.v2:
        scope = REQUIRED_SCOPES[call.request.method]
        if scope not in call.grant.scopes:
            # docs leave open: the wording; the error page says only "a scope is missing".
            return detail_response(403, f"Missing required scope: {scope}")
    return endpoint(call)


def _dispatch_admin(
    routes: Mapping[str, AdminEndpoint] | None, state: EmulatorState, request: Request
) -> Response:
    if routes is None:
        return error_response(404, f"Not found: {request.path}")
    endpoint = routes.get(request.method)
    if endpoint is None:
        allowed = ", ".join(sorted(routes))
        return error_response(405, f"Method {request.method} not allowed.", (("Allow", allowed),))
    return endpoint(state, request)


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
    return _token_reply(state, {"token": token, "expires_in": _expires_in(state)})


def _expires_in(state: EmulatorState) -> float:
    ttl = state.tokens.ttl
    return int(ttl) if float(ttl).is_integer() else ttl


def _token_reply(state: EmulatorState, payload: dict[str, Any]) -> Response:
    if state.modes.token_reply_form:
        # Legal OAuth2 of old (RFC 6749 allows no such thing, but GitHub's endpoint did it).
        body = urlencode(payload).encode()
        return Response(200, body, content_type="application/x-www-form-urlencoded")
    return json_response(200, payload)


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
    requested = body.get("scope")
    if requested is not None and not isinstance(requested, str):
        return oauth_error_response(400, "invalid_request", "scope must be a string")
    account_id = state.clients.account_of(body["client_id"], body["client_secret"])
    if account_id is None:
        return oauth_error_response(401, "access_denied", "Unauthorized")
    if body["audience"] != state.audience:
        return oauth_error_response(403, "access_denied", f"Service not found: {body['audience']}")
    allowed = state.clients.scopes_of(body["client_id"])
    # docs leave open: a request for scopes the client lacks; OAuth2 lets the server grant
    # fewer than asked and say so in "scope", which the emulator does (Auth0 may refuse).
    wanted = allowed if not requested else tuple(requested.split())
    scopes = tuple(scope for scope in wanted if scope in allowed)
    return _access_token(state, body["client_id"], body["audience"], account_id, scopes)


def _access_token(
    state: EmulatorState,
    client_id: str,
    audience: str,
    account_id: str,
    scopes: tuple[str, ...],
) -> Response:
    issued_at = int(time.time())
    scope = " ".join(scopes)
    claims = {
        "iss": "meti-emulator",
        "sub": f"{client_id}@clients",
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + max(1, int(state.tokens.ttl)),
        "scope": scope,
        "gty": "client-credentials",
        # Without it, two tokens asked for within one second would be the same string.
        "jti": secrets.token_urlsafe(16),
        ACCOUNT_CLAIM: account_id,
        CLAIM_NAMESPACE + "account_id": account_id,
        CLAIM_NAMESPACE + "role": "user",
        CLAIM_NAMESPACE + "client_name": client_id,
    }
    token = state.tokens.issue(account_id, claims, scopes)
    state.counters.token_issued()
    return _token_reply(
        state,
        {
            "access_token": token,
            "expires_in": _expires_in(state),
            "token_type": "Bearer",
            "scope": scope,
        },
    )


# --- /sources: v1 and v2 -------------------------------------------------------------------


def _get_sources(call: Call) -> Response:
    if call.v2:
        return _list_sources(call)
    if "id" in call.request.query:
        return _get_one(call, call.request.param("id") or "")
    return _list_sources(call)


def _create_sources(call: Call) -> Response:
    return _create_v2(call) if call.v2 else _create_v1(call)


def _create_v1(call: Call) -> Response:
    body = call.request.json()
    if body is _NOT_JSON:
        return error_response(
            400, "Request body is not valid JSON; expected a GeoJSON FeatureCollection."
        )
    try:
        created = call.ledger.create(body, account_id=call.account_id)
    except CollectionRejected as error:
        return _rejection_v1(error)
    call.state.counters.sources_created(len(created))
    if len(created) == 1:
        return json_response(
            201, {"id": created[0]["id"], "message": "Source created successfully."}
        )
    return json_response(201, {"data": created, "message": "Sources created successfully."})


def _create_v2(call: Call) -> Response:
    # docs leave open: the sandbox page's flat single-source body ({"alt_id", "methodology",
    # "geometry"}); METI's own client sends the feature_collection form to the sandbox too,
    # so the emulator validates both routes alike and refuses the flat body with a 422.
    body = call.request.json()
    if body is _NOT_JSON:
        return detail_response(422, [_json_invalid(call.request.body)])
    try:
        wanted = parse_create_request(body)
        created = call.ledger.create(
            wanted.feature_collection, account_id=call.account_id, fields=wanted.fields
        )
    except RequestInvalid as error:
        return detail_response(422, error.errors)
    except CollectionRejected as error:
        return detail_response(422, _rejection_items(error, body))
    call.state.counters.sources_created(len(created))
    sources = [call.ledger.get(item["id"], account_id=call.account_id) for item in created]
    # docs leave open: the status of a v2 create; 201 is FastAPI's usual choice for one.
    return json_response(201, [source_response(source) for source in sources if source])


def _json_invalid(body: bytes) -> dict[str, Any]:
    if not body:
        return error_item(["body"], "missing", "Field required", None)
    try:
        json.loads(body)
        position = 0
    except ValueError as error:
        position = getattr(error, "pos", 0)
    return {**error_item(["body", position], "json_invalid", "JSON decode error", {})}


def _rejection_items(error: CollectionRejected, body: Any) -> list[dict[str, Any]]:
    items = []
    for problem in error.problems:
        loc: list[Any] = ["body", "feature_collection"]
        if problem.index is not None:
            loc += ["features", problem.index]
        loc += list(problem.path)
        # docs leave open: the "type" of a ledger rule; the emulator names the rule.
        items.append(error_item(loc, problem.kind, problem.message, _at(body, loc[1:])))
    return items


def _at(document: Any, path: list[Any]) -> Any:
    """The value at ``path`` inside ``document``, or None where the path breaks off."""
    for part in path:
        if isinstance(document, dict) and isinstance(part, str):
            document = document.get(part)
        elif isinstance(document, list) and isinstance(part, int) and 0 <= part < len(document):
            document = document[part]
        else:
            return None
    return document


def _delete_sources(call: Call) -> Response:
    if "id" in call.request.query:
        return _delete_one(call, call.request.param("id") or "")
    alt_id = call.request.param("alt_id")
    if not alt_id:
        return call.error(400, "Pass the query parameter id (or alt_id) of what to delete.")
    count = call.ledger.delete_by_alt_id(alt_id, account_id=call.account_id)
    if count == 0:
        return call.error(404, V2_SOURCE_NOT_FOUND if call.v2 else SOURCE_NOT_FOUND)
    # docs leave open: the body of a successful delete (v1 and v2 alike).
    return json_response(200, {"message": "Sources deleted successfully.", "count": count})


def _get_source_by_path(call: Call) -> Response:
    return _get_one(call, call.source_id or "")


def _delete_source_by_path(call: Call) -> Response:
    return _delete_one(call, call.source_id or "")


def _get_one(call: Call, source_id: str) -> Response:
    not_found = V2_SOURCE_NOT_FOUND if call.v2 else SOURCE_NOT_FOUND
    if not source_id:
        return call.error(404 if call.v2 else 400, "The query parameter id must not be empty.")
    # Another account's source is as unknown to the caller as one that does not exist.
    source = call.ledger.get(source_id, account_id=call.account_id)
    if source is None:
        return call.error(404, not_found)
    if call.v2:
        return json_response(200, source_response(source))
    if call.state.modes.reply_shape == "2024":
        return json_response(200, shape_2024(source))
    return json_response(200, source)


def _delete_one(call: Call, source_id: str) -> Response:
    if not source_id:
        return call.error(400, "The query parameter id must not be empty.")
    if not call.ledger.delete(source_id, account_id=call.account_id):
        return call.error(404, V2_SOURCE_NOT_FOUND if call.v2 else SOURCE_NOT_FOUND)
    return json_response(200, {"message": "Source deleted successfully."})


def _rejection_v1(error: CollectionRejected) -> Response:
    collection_level = [problem for problem in error.problems if problem.index is None]
    if collection_level:
        return error_response(400, f"Invalid FeatureCollection: {collection_level[0]}")
    return error_response(422, f"{INVALID_FEATURES}: {error.problems[0]}")


# --- listing ---------------------------------------------------------------------------------


class _BadParam(ValueError):
    """A query parameter that does not parse; ``item`` is its FastAPI 422 item."""

    def __init__(self, message: str, item: dict[str, Any]) -> None:
        super().__init__(message)
        self.item = item


def _list_sources(call: Call) -> Response:
    request, modes = call.request, call.state.modes
    try:
        high = None if modes.max_page_size is not None else MAX_LIMIT
        limit = _integer_param(request, "limit", DEFAULT_LIMIT, low=1, high=high)
        offset = _integer_param(request, "offset", 0, low=0, high=None)
        filters = _source_filter(call)
    except _BadParam as error:
        if call.v2:
            return detail_response(422, [error.item])
        return error_response(400, str(error))
    if modes.max_page_size is not None:
        limit = min(limit, modes.max_page_size)
    wanted_id = request.param("id") if call.v2 else None
    if wanted_id is not None:
        # docs leave open: how id combines with the other filters; as a filter, ANDed with them.
        filters = replace(filters, source_id=wanted_id)
    page, total = call.ledger.page(filters, limit, offset)
    if call.v2:
        if page and not has_every_response_field(page[0]):
            page = [json.dumps(source_response(json.loads(item))).encode() for item in page]
    elif modes.reply_shape == "2024":
        page = encoded_2024(page)
    items = b"[" + b",".join(page) + b"]"
    key = call.state.list_envelope
    if key is None:
        body = items
    else:
        values = {"total": total, "limit": limit, "offset": offset}
        tail = "".join(f',"{name}":{values[name]}' for name in modes.envelope_extras)
        body = b'{"' + key.encode() + b'":' + items + tail.encode() + b"}"
    # docs leave open: a total count; the header is the emulator's, the body stays as asked.
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
        if value is None:
            item = error_item(
                ["query", name],
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                text,
            )
        elif value < low:
            # docs leave open: the bounds of limit and offset; the emulator's are 1..1000, >= 0.
            item = error_item(
                ["query", name],
                "greater_than_equal",
                f"Input should be greater than or equal to {low}",
                text,
            )
        else:
            item = error_item(
                ["query", name],
                "less_than_equal",
                f"Input should be less than or equal to {high}",
                text,
            )
        raise _BadParam(f"{name} must be an integer {bounds} (got {text!r}).", item)
    return value


def _source_filter(call: Call) -> SourceFilter:
    request = call.request
    if call.state.documented_only:
        # As the real service does with a parameter it does not know: ignore it.
        ignored = UNDOCUMENTED_FILTERS_V2 if call.v2 else UNDOCUMENTED_FILTERS
        request = _without_params(request, ignored)
    return SourceFilter(
        account_id=call.account_id,
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
    raise _BadParam(
        f"{name} must be true or false (got {text!r}).",
        error_item(["query", name], "bool_parsing", "Input should be a valid boolean", text),
    )


def _timestamp_param(request: Request, name: str) -> datetime | None:
    text = request.param(name)
    if text is None or text == "":
        return None
    try:
        return _read_timestamp(text)
    except ValueError:
        raise _BadParam(
            f"{name} must be an ISO 8601 timestamp (got {text!r}).",
            error_item(
                ["query", name],
                "datetime_from_date_parsing",
                "Input should be a valid datetime",
                text,
            ),
        ) from None


def _read_timestamp(text: str) -> datetime:
    """An ISO 8601 moment as aware UTC; a moment without a zone is read as UTC.

    :raises ValueError: not ISO 8601
    """
    cleaned = text.strip()
    if cleaned[-1:] in ("Z", "z"):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


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


def _configure_modes(state: EmulatorState, request: Request) -> Response:
    body = request.json()
    if not isinstance(body, dict):
        return error_response(400, "Request body must be a JSON object of mode settings.")
    settings = dict(body)
    envelope = settings.pop("list_envelope", state.list_envelope)
    try:
        modes = state.modes.updated(settings)
        state.list_envelope = envelope
    except (TypeError, ValueError) as error:
        return error_response(400, f"Invalid modes: {error}")
    state.modes = modes
    return _show_modes(state, request)


def _show_modes(state: EmulatorState, request: Request) -> Response:
    return json_response(200, {**state.modes.as_dict(), "list_envelope": state.list_envelope})


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
_ADMIN_ROUTES: dict[str, dict[str, AdminEndpoint]] = {
    "modes": {"GET": _show_modes, "POST": _configure_modes},
    "faults": {"GET": _show_faults, "POST": _configure_faults},
    "expire-tokens": {"POST": _expire_tokens},
    "stats": {"GET": _show_stats},
    "reset": {"POST": _reset},
    "seed": {"POST": _seed_sources},
}
