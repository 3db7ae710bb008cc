"""A Model Context Protocol server for tests/mcp_tools.rs, built on the `mcp` package from
PyPI (its FastMCP server over streamable HTTP). Usage: server.py PORT; it serves /mcp on
127.0.0.1:PORT until it is killed."""

import sys

from mcp.server.fastmcp import FastMCP

server = FastMCP("halyard-test", host="127.0.0.1", port=int(sys.argv[1]), log_level="WARNING")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()


@server.tool()
def fail(reason: str) -> str:
    """Always fails with the reason given."""
    raise ValueError(reason)


server.run(transport="streamable-http")
