"""Hooks for `.ci/schemathesis.sh`, loaded through SCHEMATHESIS_HOOKS.

Schemathesis 4.32 scans every string of every JSON response for same-origin URLs to learn
links from, and lets `urllib` refuse one (`http://[0]`: a bracketed host that is no IP
address) end the whole run with an internal error. Halyard echoes what it is given (the echo
agent's answer, a stored URL), so a generated string can do that. Such a string is no link:
it is skipped here instead.
"""

try:
    from schemathesis.engine import observations
except ImportError:  # a version without the scan
    observations = None

if observations is not None and hasattr(observations, "_same_origin_path"):
    _same_origin_path = observations._same_origin_path

    def _tolerant_same_origin_path(value, origin):
        try:
            return _same_origin_path(value, origin)
        except ValueError:
            return None

    observations._same_origin_path = _tolerant_same_origin_path

import json
import re

import schemathesis

# Operations that call a server the request names (an MCP server to import from, a tool to
# test): when it cannot be reached, their documented answer is `503 SERVICE_UNAVAILABLE`, as
# for a model provider. Here (no network, no DNS) every name the generator makes up is such
# a server.
CALLS_OUT = re.compile(r"/tools/import-mcp$|/tools/\{toolId\}/test$")


@schemathesis.check
def not_a_server_error_but_an_unreachable_backend(ctx, response, case):
    """`not_a_server_error`, except the documented 503 of an operation that calls out."""
    if response.status_code < 500:
        return None
    if response.status_code == 503 and CALLS_OUT.search(case.operation.path):
        try:
            code = json.loads(response.text)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if code == "SERVICE_UNAVAILABLE":
            return None
    raise AssertionError(f"Server error {response.status_code}: {response.text[:300]}")
