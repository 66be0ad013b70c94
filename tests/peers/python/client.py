"""An MCP client built with the official Python SDK (`mcp` on PyPI), for the interop tests.

    client.py --transport sse|streamable-http --url URL [--header 'Name: value' ...]
              [--scenario interop|server-requests|modern]

Runs the interop scenario, the same steps as the rmcp demo client's `interop` scenario
(tools/list, a tool that answers, one that reports isError, an unknown tool, resources/read,
prompts/get, a notification), and prints the same JSON summary: {"scenario", "ok", "steps":
[{"name", "ok", "detail"}]}. The test asserts on the summary and on what the gateway stored.
"""

import argparse
import asyncio
import json
import sys
import warnings

import httpx2
import mcp_types as types
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

# The scenario sends the roots notification on purpose (revisions before 2026-07-28 have it).
warnings.simplefilter("ignore", MCPDeprecationWarning)

README_URI = "demo://readme"


class Steps:
    def __init__(self):
        self.steps = []

    async def run(self, name, call, check):
        try:
            result = await call()
            detail = result.model_dump(mode="json", by_alias=True) if result is not None else {}
            ok = check(detail)
        except MCPError as error:
            detail, ok = {"code": error.error.code, "message": error.error.message}, False
        self.steps.append({"name": name, "ok": ok, "detail": detail})
        return detail


async def scenario(session: ClientSession, steps: Steps):
    init = await steps.run("initialize", session.initialize, lambda v: "protocolVersion" in v)
    await steps.run("tools/list", session.list_tools,
                    lambda v: any(t["name"] == "echo" for t in v["tools"]))
    await steps.run("tools/call echo", lambda: session.call_tool("echo", {"text": "hi"}),
                    lambda v: v["content"][0]["text"] == "hi" and not v.get("isError"))
    await steps.run("tools/call tool_error", lambda: session.call_tool("tool_error", {}),
                    lambda v: v.get("isError") is True)
    unknown = Steps()
    await unknown.run("tools/call no_such_tool", lambda: session.call_tool("no_such_tool", {}),
                      lambda v: True)
    steps.steps.append({**unknown.steps[0], "ok": True})
    await steps.run("resources/read", lambda: session.read_resource(README_URI),
                    lambda v: v["contents"][0]["text"].startswith("demo-mcp"))
    await steps.run("prompts/get greet", lambda: session.get_prompt("greet", {"name": "Ada"}),
                    lambda v: "Ada" in v["messages"][0]["content"]["text"])
    await steps.run("notifications/roots/list_changed", session.send_roots_list_changed,
                    lambda v: True)
    return init


async def list_roots(context):
    return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])


async def sample(context, params):
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="ok"), model="interop-echo"
    )


async def server_requests(session: ClientSession, steps: Steps):
    """The server asks back during a tool call; the client answers each request."""
    await steps.run("initialize", session.initialize, lambda v: "protocolVersion" in v)
    async def progress(progress, total, message):
        pass

    # A progress callback gives the call a progress token, so the server reports progress.
    ask = lambda: session.call_tool("ask_client", {}, progress_callback=progress)  # noqa: E731
    await steps.run("tools/call ask_client", ask,
                    lambda v: v["content"][0]["text"] == "1 roots; sampled: ok")


SCENARIOS = {"interop": scenario, "server-requests": server_requests}


async def modern(url, headers):
    """The 2026-07-28 revision: `server/discover` instead of the handshake, no session, the
    protocol version in every request's `_meta` and `Mcp-Method` / `Mcp-Name` headers, and a
    `subscriptions/listen` stream that receives a resource update."""
    steps = Steps()
    http = httpx2.AsyncClient(headers=headers)
    async with Client(streamable_http_client(url, http_client=http), mode="auto") as client:
        steps.steps.append({"name": "server/discover", "ok": client.protocol_version == "2026-07-28",
                            "detail": {"protocolVersion": client.protocol_version}})
        await steps.run("tools/list", client.list_tools,
                        lambda v: any(t["name"] == "echo" for t in v["tools"]))
        await steps.run("tools/call echo", lambda: client.call_tool("echo", {"text": "hi"}),
                        lambda v: v["content"][0]["text"] == "hi")
        await steps.run("tools/call tool_error", lambda: client.call_tool("tool_error", {}),
                        lambda v: v.get("isError") is True)
        await steps.run("resources/read", lambda: client.read_resource(README_URI),
                        lambda v: v["contents"][0]["text"].startswith("demo-mcp"))
        await steps.run("prompts/get greet", lambda: client.get_prompt("greet", {"name": "Ada"}),
                        lambda v: "Ada" in v["messages"][0]["content"]["text"])
        # `subscriptions/listen` replaces the GET stream: the response is an SSE stream that
        # opens with the acknowledgment and carries the change notifications.
        async with client.listen(resource_subscriptions=[README_URI]) as subscription:
            await client.call_tool("touch_readme", {})
            event = await asyncio.wait_for(subscription.__anext__(), timeout=10)
        updated = getattr(event, "uri", None)
        steps.steps.append({"name": "subscriptions/listen", "ok": str(updated) == README_URI,
                            "detail": {"honored": subscription.honored.model_dump(mode="json", by_alias=True,
                                                                                  exclude_none=True),
                                       "updated": str(updated)}})
    return steps.steps


async def run(transport, url, headers, name):
    steps = Steps()
    if transport == "sse":
        connect = sse_client(url, headers=headers)
    else:
        connect = streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers))
    async with connect as streams:
        async with ClientSession(streams[0], streams[1], list_roots_callback=list_roots,
                                 sampling_callback=sample) as session:
            await SCENARIOS[name](session, steps)
    return steps.steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", required=True, choices=["sse", "streamable-http"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--scenario", default="interop", choices=[*sorted(SCENARIOS), "modern"])
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if args.scenario == "modern":
        run_scenario = modern(args.url, headers)
    else:
        run_scenario = run(args.transport, args.url, headers, args.scenario)
    steps = asyncio.run(asyncio.wait_for(run_scenario, timeout=60))
    ok = all(s["ok"] for s in steps)
    print(json.dumps({"scenario": args.scenario, "ok": ok, "steps": steps}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
