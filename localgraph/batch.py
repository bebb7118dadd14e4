"""JSON batching: ``POST /v1.0/$batch`` [docs/graph-behaviour.md section 4, throttling inside a batch: section 5].

The batch is parsed and validated as a whole first; any problem with its shape is a 400 for the whole
batch and no step runs. Then every step becomes its own :class:`GraphRequest` served by the server's
pipeline (``dispatch``): authenticated as the batch, matched, subject to faults, charged its own
resource units and throttled on its own (a throttled step answers 429 with its own ``Retry-After``
while the batch answers 200), and logged as a batch step. Only the step's own headers apply (so
``ConsistencyLevel`` must be in the step), plus the batch's ``Authorization``.

``dependsOn``: a step whose dependency failed (status >= 400, including 424 and 429) is not run and
answers 424 ``FailedDependency``, which propagates down a chain. Responses come back in a shuffled order
when ``settings.shuffle_batch_responses`` is on (Graph: "the order may differ"), so clients must
correlate by id.

Where docs/graph-behaviour.md is silent, the choices (all in the direction of "if it passes here it passes on Graph"):

- A step with a body but no ``Content-Type`` header, and a POST/PATCH/PUT step without a body, fail the
  whole batch with 400 ``BadRequest`` "Write request id : X does not contain Content-Type header or
  body." Third-party captures of real Graph show exactly this batch-level error
  (microsoftgraph/msgraph-sdk-dotnet#2628, Softeria/ms-365-mcp-server#677: "the outer call 400s and none
  of the sub-requests run"). DELETE needs no body.
- ``dependsOn`` must name a step that appears EARLIER in the array; anything else (unknown id, a later
  step, itself) is a 400 for the batch. Real Graph rejects forward references with "Invalid dependency
  for request Id ..." (microsoftgraph/msgraph-sdk-dotnet-core#891), which also rules out cycles; steps
  then run in array order, which respects every dependency.
- Ids must be JSON strings (the docs say "string"; an SDK always sends strings).
- Messages: "Request Id X has to be unique in a batch." and "Invalid batch payload format." (absolute
  URLs) are quoted from third-party captures of real Graph; the others are plausible.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Generator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from localgraph.errors import GraphError, new_request_id
from localgraph.routing import GraphRequest, GraphResponse, Router

router = Router()
T = TypeVar("T")

MAX_STEPS = 20
METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE"}
BODY_REQUIRED = {"POST", "PATCH", "PUT"}
INVALID_PAYLOAD = "Invalid batch payload format."


def _bad(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


class Step:
    __slots__ = ("body", "depends_on", "headers", "id", "method", "url")

    def __init__(self, step_id: str, method: str, url: str, headers: dict[str, str], body: bytes | None,
                 depends_on: list[str]) -> None:  # fmt: skip
        self.id = step_id
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.depends_on = depends_on


# ------------------------------------------------------------------------------------------- parsing


def _is_absolute(url: str) -> bool:
    # Only the part before the query: "$filter=... eq 'https://x'" is not an absolute URL.
    head = urlsplit(url.split("?", 1)[0])
    return bool(head.scheme or head.netloc or url.startswith("//"))


def _step_path(url: str) -> str:
    path = urlsplit(url).path
    return "/" + path.strip("/")


def _headers(step_id: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(f"Invalid headers for request Id {step_id}.")
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _bad(f"Invalid value for header '{name}' of request Id {step_id}.")
        headers[str(name)] = str(value)
    return headers


def _body_bytes(step_id: str, body: Any, content_type: str) -> bytes:
    """The step's body as the bytes a direct request would carry (OData JSON batch format rules)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    if not isinstance(body, str):
        raise _bad(f"The body of request Id {step_id} must be a base64 string for content type '{media}'.")
    if media.startswith("text/"):
        return body.encode()
    # Binary content (e.g. image/jpeg for a photo): base64; accept the base64url alphabet too (OData).
    text = body.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"The body of request Id {step_id} is not valid base64.") from None


def parse_batch(raw: bytes) -> list[Step]:
    """Validate the whole batch; any problem is a 400 for the batch (no step runs)."""
    try:
        payload = json.loads(raw) if raw and raw.strip() else None
    except ValueError:
        payload = None
    entries = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(entries, list) or not entries:
        raise _bad(INVALID_PAYLOAD)
    if len(entries) > MAX_STEPS:
        # docs/graph-behaviour.md section 4: code and message observed (3P); the HTTP status is UNCONFIRMED, 400 is the
        # plausible choice (it is a malformed batch, and Graph answers 400 for every other batch problem).
        message = f"Number of batch request steps exceeds the maximum value of {MAX_STEPS}."
        raise _bad(message, code="MaximumValueExceeded")
    steps: list[Step] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad(INVALID_PAYLOAD)
        step_id = entry.get("id")
        if not isinstance(step_id, str) or not step_id:
            raise _bad("Every request in a batch must have an id of type string.")
        if step_id.lower() in seen:  # ids are not case-sensitive [docs/graph-behaviour.md section 4]
            raise _bad(f"Request Id {step_id} has to be unique in a batch.")
        method = entry.get("method")
        if not isinstance(method, str) or not method:
            raise _bad(f"Request Id {step_id} does not have a method.")
        method = method.upper()
        if method not in METHODS:
            raise _bad(f"Request Id {step_id} has an invalid method '{entry['method']}'.")
        url = entry.get("url")
        if not isinstance(url, str) or not url.strip():
            raise _bad(f"Request Id {step_id} does not have a url.")
        url = url.strip()
        if _is_absolute(url):
            raise _bad(INVALID_PAYLOAD)  # observed for absolute step URLs (3P)
        if _step_path(url).lower() == "/$batch":
            raise _bad(f"Request Id {step_id}: a batch cannot contain another batch.")
        headers = _headers(step_id, entry.get("headers"))
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        body = entry.get("body")
        if (body is not None and not content_type) or (body is None and method in BODY_REQUIRED):
            raise _bad(f"Write request id : {step_id} does not contain Content-Type header or body.")
        depends_on = entry.get("dependsOn")
        if depends_on is None:
            depends_on = []
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise _bad(f"Invalid dependsOn for request Id {step_id}.")
        for dep in depends_on:
            if dep.lower() not in seen:  # unknown, itself or later
                raise _bad(f"Invalid dependency for request Id {step_id}: {dep} is not an earlier request.")
        seen.add(step_id.lower())
        steps.append(
            Step(
                step_id,
                method,
                url,
                headers,
                None if body is None else _body_bytes(step_id, body, content_type or ""),
                depends_on,
            )
        )
    return steps


# ------------------------------------------------------------------------------------------ responses


def _step_response(step_id: str, response: GraphResponse) -> dict[str, Any]:
    """One entry of ``responses``: body as JSON, base64 for binary, text for text/plain; none if empty."""
    headers: dict[str, str] = {"Cache-Control": "no-cache"}
    body = response.body
    entry: dict[str, Any] = {"id": step_id, "status": response.status, "headers": headers}
    if body is None:
        headers.update(response.headers)
        return entry
    if isinstance(body, bytes):
        content_type = response.content_type or "application/octet-stream"
        entry["body"] = base64.b64encode(body).decode()
    elif isinstance(body, str):
        content_type = response.content_type or "text/plain"
        entry["body"] = body
    else:
        content_type = response.content_type or "application/json"
        headers["OData-Version"] = "4.0"
        entry["body"] = body
    headers["Content-Type"] = content_type
    headers.update(response.headers)
    return entry


def _failed_dependency(step: Step, dependency: str, request_id: str) -> dict[str, Any]:
    error = GraphError(
        424,
        "FailedDependency",
        f"The request {step.id} was not run because it depends on request {dependency}, which failed.",
    )
    response = GraphResponse(424, error.body(request_id, step_header(step, "client-request-id")),
                             content_type="application/json")  # fmt: skip
    return _step_response(step.id, response)


def step_header(step: Step, name: str) -> str | None:
    return next((v for k, v in step.headers.items() if k.lower() == name), None)


# ---------------------------------------------------------------------------------------------- route


@router.route("POST", "/$batch")
def run_batch(ctx, req: GraphRequest, dispatch=None) -> GraphResponse:
    """Serve a JSON batch; each step goes through ``dispatch`` (the server's pipeline)."""
    return drain(batch_steps(ctx, req, dispatch))


def drain(steps: Generator[None, None, T]) -> T:
    """Run a pausing generator (:func:`batch_steps`, ``server.dispatch_steps``) to its end, without pauses."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def batch_steps(ctx, req: GraphRequest, dispatch=None) -> Generator[None, None, GraphResponse]:
    """:func:`run_batch`, pausing after each step: the server lets other requests in between (Graph serves a
    client's requests side by side; one process on one event loop must take turns, and a batch of twenty
    member pages should not hold a single page request back for all twenty)."""
    if dispatch is None:  # the server always passes its pipeline; this is for direct callers
        from localgraph.server import dispatch
    steps = parse_batch(req.body)
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    authorization = req.header("Authorization")
    for step in steps:
        failed = next((d for d in step.depends_on if statuses[d.lower()] >= 400), None)
        if failed is not None:
            statuses[step.id.lower()] = 424
            responses.append(_failed_dependency(step, failed, new_request_id()))
            continue
        headers = {k: v for k, v in step.headers.items() if k.lower() != "authorization"}
        if authorization:
            headers["Authorization"] = authorization
        step_req = GraphRequest.from_url(
            step.method,
            step.url,
            headers,
            step.body or b"",
            req.base_url,
            in_batch=True,
            request_id=new_request_id(),
        )
        response = dispatch(ctx, step_req, caller=req.caller)
        statuses[step.id.lower()] = response.status
        responses.append(_step_response(step.id, response))
        yield
    if ctx.settings.shuffle_batch_responses:
        random.Random().shuffle(responses)
    return GraphResponse(200, {"responses": responses}, content_type="application/json")
