"""An MCP server built with the official Python SDK (`mcp` on PyPI), for the interop tests.

    server.py --transport sse|streamable-http|streamable-http-json --port N

Prints `listening <port>` once it accepts connections. Tools `echo` and `tool_error` (raises:
the SDK answers a result flagged isError), the resource `demo://readme` and the prompt `greet`;
`ask_client`, which sends the client `roots/list` and `sampling/createMessage` requests,
progress and a log message on the call's stream (the server-to-client scenario); and
`touch_readme`, which announces a change of the readme to `subscriptions/listen` streams.
"""

import argparse
import warnings
import socket
import sys

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import SamplingMessage, TextContent
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning

# Sampling and roots are deprecated as of 2026-07-28; the 2025-11-25 traffic here uses them.
warnings.simplefilter("ignore", MCPDeprecationWarning)

server = MCPServer("python-interop")

# The same surface as the rmcp demo server (examples/demo-mcp/src/handler.rs), so both
# clients' interop scenario runs unchanged against either.
README_URI = "demo://readme"
README_TEXT = "demo-mcp: a tiny MCP server used to exercise the MCP-aware Envoy filter end to end."
TOOL_ERROR_TEXT = "tool_error: the tool ran and reported a failure"


@server.tool()
def echo(text: str) -> str:
    """Return the given text."""
    return text


@server.tool()
def tool_error() -> str:
    """Always answers with a tool result flagged isError: true."""
    raise RuntimeError(TOOL_ERROR_TEXT)


@server.tool()
async def ask_client(ctx: Context) -> str:
    """Asks the client for its roots and a sampled message, reporting progress and logging:
    the server-to-client traffic the gateway audits."""
    await ctx.info("asking the client")
    await ctx.report_progress(1, 3)
    roots = await ctx.session.list_roots()
    await ctx.report_progress(2, 3)
    sampled = await ctx.session.create_message(
        [SamplingMessage(role="user", content=TextContent(type="text", text="say ok"))],
        max_tokens=8,
        related_request_id=ctx.request_id,
    )
    return f"{len(roots.roots)} roots; sampled: {sampled.content.text}"


@server.tool()
async def touch_readme(ctx: Context) -> str:
    """Announces that the readme changed: a `notifications/resources/updated` on every
    `subscriptions/listen` stream subscribed to it (2026-07-28)."""
    await ctx.notify_resource_updated(README_URI)
    return "touched"


@server.resource(README_URI)
def readme() -> str:
    """What this server is."""
    return README_TEXT


@server.prompt()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Please greet {name} warmly."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", required=True,
                        choices=["sse", "streamable-http", "streamable-http-json"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Requests arrive through Envoy with its listener's Host: no DNS-rebinding allow-list.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if args.transport == "sse":
        app = server.sse_app(transport_security=security)
    else:
        app = server.streamable_http_app(
            json_response=args.transport == "streamable-http-json",
            transport_security=security,
        )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"listening {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
