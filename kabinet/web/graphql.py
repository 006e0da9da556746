"""`POST /graphql`: JSON only, one operation per request, body size and origin checked.

A thin endpoint over `schema.execute` rather than Strawberry's HTTP view: it owns the
request limits of SPEC §5, builds the typed Context, and returns the read connection to the
pool when the result is ready.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from auth.client_address import TrustedProxies, client_address
from auth.sessions import COOKIE_NAME, Principal, needs_touch, touch_caller
from core.db import RequestReader
from core.settings import Settings
from kabinet.web.auth import ended_credential, request_principal, request_token
from kabinet.web.metrics import Metrics
from models.base import utcnow
from resolvers.loaders import Loaders
from schema import MASKED_MESSAGE, KabinetSchema, should_mask_error
from schema.context import Context
from schema.limits import root_fields
from schema.sql_answers import SqlAnswers

# What a subscriber who must change the temporary password may still do.
ALLOWED_BEFORE_PASSWORD_CHANGE = frozenset({"changePassword", "logout", "__typename"})

log = logging.getLogger("kabinet.graphql")


class RequestRejected(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _error_response(rejected: RequestRejected) -> Response:
    body = {"errors": [{"message": rejected.message, "extensions": {"code": rejected.code}}]}
    return JSONResponse(body, status_code=rejected.status, headers=rejected.headers)


# How deep `variables` may nest: no input type of the schema is nearly this deep.
MAX_JSON_DEPTH = 32


def _payload_problem(payload: Any) -> RequestRejected | None:
    """What no text column or GraphQL input takes, found without recursion: nesting deeper
    than MAX_JSON_DEPTH, NUL characters (valid JSON and GraphQL, refused by PostgreSQL)
    and lone surrogates (valid JSON escapes, not text: no encoder takes them)."""
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return RequestRejected(400, "BAD_REQUEST", "NUL characters are not allowed.")
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return RequestRejected(
                        400,
                        "BAD_USER_INPUT",
                        "Strings must be valid Unicode text (a lone surrogate was sent).",
                    )
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return RequestRejected(
                    400, "BAD_REQUEST", f"The body nests deeper than {MAX_JSON_DEPTH} levels."
                )
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return None


def _origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}".lower()


class GraphQLEndpoint:
    def __init__(self, *, schema: KabinetSchema, settings: Settings, metrics: Metrics) -> None:
        self.schema = schema
        self.settings = settings
        self.metrics = metrics
        self.allowed_origins = {_origin_of(settings.public_url)} | {
            _origin_of(origin) for origin in settings.cors_origins
        }
        self.trusted_proxies = TrustedProxies(settings.trusted_proxies)

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            payload = await self._read_payload(request)
        except RequestRejected as rejected:
            self.metrics.graphql_requests.labels("invalid", "rejected").inc()
            return _error_response(rejected)
        try:
            response = await self._execute(request, payload)
        except Exception:
            # A defect of ours, never a client's mistake: still JSON, still with the request
            # id (the middleware adds it to any response returned), the traceback only logged.
            log.exception("unexpected error answering /graphql")
            response = JSONResponse(
                {
                    "errors": [
                        {"message": MASKED_MESSAGE, "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
                    ]
                },
                status_code=500,
            )
        operation = self.metrics.operation_label(
            payload.get("operationName"),
            signed_in_success=getattr(request.state, "signed_in_success", False),
        )
        self.metrics.graphql_seconds.labels(operation).observe(time.perf_counter() - started)
        return response

    async def _read_payload(self, request: Request) -> dict[str, Any]:
        if request.method != "POST":
            raise RequestRejected(
                405, "METHOD_NOT_ALLOWED", "Use POST with a JSON body.", {"Allow": "POST"}
            )
        self._check_origin(request)
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise RequestRejected(415, "UNSUPPORTED_MEDIA_TYPE", "Send application/json.")
        body = await self._read_body(request)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RequestRejected(400, "BAD_REQUEST", "The body is not valid JSON.") from None
        except RecursionError:
            raise RequestRejected(
                400, "BAD_REQUEST", f"The body nests deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        if isinstance(payload, list):
            raise RequestRejected(400, "BAD_REQUEST", "Batched requests are not supported.")
        if not isinstance(payload, dict):
            raise RequestRejected(400, "BAD_REQUEST", "The body must be a JSON object.")
        query = payload.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RequestRejected(400, "BAD_REQUEST", "`query` must be a non-empty string.")
        variables = payload.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise RequestRejected(400, "BAD_REQUEST", "`variables` must be an object.")
        operation_name = payload.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise RequestRejected(400, "BAD_REQUEST", "`operationName` must be a string.")
        # NUL is valid JSON and GraphQL but no text column takes it (PostgreSQL refuses it):
        # refuse it here, plainly, rather than as a database error deep inside a resolver.
        if "\\u0000" in query.lower():
            raise RequestRejected(400, "BAD_REQUEST", "NUL characters are not allowed.")
        problem = _payload_problem(payload)
        if problem is not None:
            raise problem
        return payload

    def _check_origin(self, request: Request) -> None:
        # A browser attaches the session cookie by itself, so a cross-site POST that carries
        # it is a CSRF attempt (SPEC §5). A Bearer token is only ever sent by the page's own
        # code: a front end on an allowlisted origin may call with one (SPEC §4).
        cross_site = request.headers.get("sec-fetch-site", "").lower() == "cross-site"
        if cross_site and COOKIE_NAME in request.cookies:
            raise RequestRejected(403, "FORBIDDEN", "Cross-site requests are not allowed.")
        origin = request.headers.get("origin")
        if origin is None:
            return
        origin = origin.lower()
        same_origin = origin.partition("://")[2] == request.headers.get("host", "").lower()
        if not same_origin and origin not in self.allowed_origins:
            raise RequestRejected(403, "FORBIDDEN", "This origin is not allowed.")

    async def _read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = RequestRejected(
            413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {limit} bytes."
        )
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise RequestRejected(400, "BAD_REQUEST", "Bad Content-Length.")
            if int(declared) > limit:
                raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _introspection_allowed(self, context: Context) -> bool:
        if not self.settings.is_production or self.settings.introspection_in_production:
            return True
        return context.principal is not None and context.principal.is_staff

    async def _caller_and_answer(
        self, request: Request, reader: RequestReader, payload: dict[str, Any]
    ) -> tuple[Principal | None, str | None]:
        """The caller (see kabinet/web/auth.py) and, when the document is answered from one
        statement (schema/sql_answers.py), the answer's `data` as JSON text, found together;
        an active session's idle expiry is pushed forward at most once a minute."""
        answered = None
        sql_answers: SqlAnswers | None = getattr(self.schema, "sql_answers", None)
        if sql_answers is not None:
            answered = await sql_answers.answer(
                payload["query"],
                payload.get("variables"),
                payload.get("operationName"),
                token=request_token(request),
                reader=reader,
                settings=self.settings,
            )
        if answered is None:
            principal, data = await request_principal(request, reader), None
        else:
            principal, data = answered.principal, answered.data
        await self._touch(request, reader, principal)
        return principal, data

    async def _touch(
        self, request: Request, reader: RequestReader, principal: Principal | None
    ) -> None:
        if principal is not None and principal.last_used_at is not None:
            now = utcnow()
            if needs_touch(principal.last_used_at, now):
                await touch_caller(reader, settings=self.settings, principal=principal, now=now)

    @staticmethod
    def _refusal(message: str, code: str) -> Response:
        # A request error: nothing ran, so there is no `data` (SPEC §4).
        return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]})

    async def _execute(self, request: Request, payload: dict[str, Any]) -> Response:
        app_state = request.app.state
        reader = RequestReader(app_state.engine)
        try:
            principal, data = await self._caller_and_answer(request, reader, payload)
        except BaseException:
            await reader.close()
            raise
        ended = ended_credential(request, principal)
        context = Context(
            request=request,
            settings=self.settings,
            reader=reader,
            loaders=Loaders(reader, self.settings),
            principal=principal,
            session_ended=ended is not None,
            client_address=client_address(request, self.trusted_proxies),
            user_agent=request.headers.get("user-agent"),
            clear_cookies=[COOKIE_NAME] if ended == "cookie" else [],
        )
        query: str = payload["query"]
        prepared = self.schema.prepare(query)  # parsed and validated once, kept (SPEC §5)
        if not self._introspection_allowed(context) and prepared.uses_introspection:
            await reader.close()
            return self._refusal("Introspection is for signed-in staff only.", "FORBIDDEN")
        if principal is not None and principal.must_change_password and not prepared.errors:
            assert prepared.document is not None
            fields = root_fields(prepared.document, payload.get("operationName"))
            if fields is not None and not fields <= ALLOWED_BEFORE_PASSWORD_CHANGE:
                await reader.close()
                return self._refusal(
                    "Change the temporary password first (changePassword).",
                    "PASSWORD_CHANGE_REQUIRED",
                )
        try:
            if data is None:
                result = await self.schema.execute(
                    query,
                    variable_values=payload.get("variables"),
                    context_value=context,
                    operation_name=payload.get("operationName"),
                )
        finally:
            await reader.close()
        if data is not None:
            text = '{"data":' + data + "}"  # built by PostgreSQL (schema/sql_answers.py)
        else:
            body: dict[str, Any] = {"data": result.data}
            if result.errors:
                body["errors"] = [self._format_error(error) for error in result.errors]
                if result.data is None and all(error.path is None for error in result.errors):
                    del body["data"]  # a request error: nothing ran (GraphQL over HTTP)
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        # Only a signed-in caller's successful operation names a metrics label (metrics.py).
        request.state.signed_in_success = context.principal is not None and (
            data is not None or not result.errors
        )
        response = Response(text, media_type="application/json", headers=context.response_headers)
        for cookie in context.response_cookies:
            response.set_cookie(**cookie)
        for name in context.clear_cookies:
            response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")
        return response

    @staticmethod
    def _format_error(error: GraphQLError) -> dict[str, Any]:
        if should_mask_error(error):
            original = error.original_error
            assert original is not None
            log.error(
                "unexpected error in a resolver",
                exc_info=(type(original), original, original.__traceback__),
                extra={"path": error.path},
            )
            return {
                "message": MASKED_MESSAGE,
                "path": error.path,
                "extensions": {"code": "INTERNAL_SERVER_ERROR"},
            }
        return dict(error.formatted)
