"""Schemathesis hooks for scripts/fuzz.

- Path parameters are often replaced by ids that exist (seeded by
  scripts/fuzz, given in ADE_FUZZ_IDS as JSON), so requests reach past the
  404s into the handlers.
- Live streams are turned off (`stream=true` follows a run until it ends,
  and no worker runs here); the Rust tests cover streaming.
- A check holds every problem+json body to its documented bounds, whatever
  its status.
"""

import json
import os
import uuid
import zlib

import schemathesis

IDS = json.loads(os.environ.get("ADE_FUZZ_IDS", "{}"))
# Most problem texts echo at most 300 characters of input, plus an ellipsis.
MAX_PROBLEM_TEXT = int(os.environ.get("ADE_FUZZ_MAX_PROBLEM_TEXT", "301"))
MAX_FIELD_ERRORS = 16
MAX_PROBLEM_BYTES = 8192


def _coin(case, salt, p):
    """A deterministic coin per case, so a failure replays the same way."""
    key = f"{salt}|{case.method}|{case.path_parameters}|{case.query}|{case.body}"
    return zlib.crc32(key.encode("utf-8", "replace")) / 2**32 < p


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


@schemathesis.hook
def before_call(context, case, kwargs):
    """Every phase, just before the request (schemathesis revalidates edits)."""
    params = case.path_parameters
    # Often ids that exist (all of a path's, so they belong together), so the
    # request reaches the handler; an invalid value (a negative case) stays,
    # and the stateful phase keeps the ids its links took from responses.
    stateful = case.meta is not None and case.meta.phase.name == "stateful"
    if params and not stateful and _coin(case, "ids", 0.75):
        for name in list(params):
            if name in IDS and _is_uuid(params[name]):
                params[name] = IDS[name]
    # The fuzzer's own key is never revoked (ids seen in responses are reused).
    if params and params.get("key_id") == IDS.get("admin_key_id"):
        params["key_id"] = IDS["key_id"]
    # Never a live stream: no worker runs, so it would not end.
    if isinstance(case.query, dict) and str(case.query.get("stream")).lower() in ("true", "1"):
        case.query["stream"] = "false"
    if isinstance(case.body, dict):
        if case.body.get("stream") is True:
            case.body["stream"] = False
        options = case.body.get("options")
        ids = options.get("document_ids") if isinstance(options, dict) else None
        if isinstance(ids, list) and len(ids) == 1 and _is_uuid(ids[0]) and _coin(case, "documents", 0.5):
            options["document_ids"] = [IDS["document_id"]]


@schemathesis.check
def problem_within_bounds(ctx, response, case):
    """A problem+json body is small, and echoes little of the input."""
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/problem+json"):
        return None
    if len(response.content) > MAX_PROBLEM_BYTES:
        raise AssertionError(f"a problem of {len(response.content)} bytes (at most {MAX_PROBLEM_BYTES})")
    problem = json.loads(response.content)
    texts = [problem.get("detail", "")]
    errors = problem.get("errors") or []
    if len(errors) > MAX_FIELD_ERRORS:
        raise AssertionError(f"{len(errors)} field errors (at most {MAX_FIELD_ERRORS})")
    for error in errors:
        texts += [error.get("field", ""), error.get("message", "")]
    for text in texts:
        if len(text) > MAX_PROBLEM_TEXT:
            raise AssertionError(f"a problem text of {len(text)} characters (at most {MAX_PROBLEM_TEXT})")
    if problem.get("status") != response.status_code:
        raise AssertionError(f"problem status {problem.get('status')} on a {response.status_code} response")
    return None
