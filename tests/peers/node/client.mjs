// An MCP client built with the official TypeScript SDK (@modelcontextprotocol/sdk), for the
// interop tests (tests/e2e_interop.rs):
//
//     node client.mjs --transport sse|streamable-http --url URL [--header 'Name: value' ...]
//
// Runs the interop scenario, the same steps as the rmcp demo client's `interop` scenario and
// the Python peer, and prints the same JSON summary: {"scenario", "ok", "steps": [...]}.
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const { values } = parseArgs({
  options: {
    transport: { type: "string" },
    url: { type: "string" },
    header: { type: "string", multiple: true, default: [] },
    scenario: { type: "string", default: "interop" },
  },
});
if (values.scenario !== "interop") throw new Error(`unknown scenario ${values.scenario}`);
const headers = Object.fromEntries(
  values.header.map((h) => {
    const at = h.indexOf(":");
    return [h.slice(0, at).trim(), h.slice(at + 1).trim()];
  }),
);
const url = new URL(values.url);
const transport =
  values.transport === "sse"
    ? new SSEClientTransport(url, {
        requestInit: { headers },
        eventSourceInit: {
          fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, ...headers } }),
        },
      })
    : new StreamableHTTPClientTransport(url, { requestInit: { headers } });
const client = new Client(
  { name: "typescript-interop-client", version: "1.0.0" },
  { capabilities: { roots: { listChanged: true } } },
);
const steps = [];

async function step(name, call, check) {
  let detail;
  let ok;
  try {
    detail = (await call()) ?? {};
    ok = check(detail);
  } catch (error) {
    if (!(error instanceof McpError)) throw error;
    detail = { code: error.code, message: error.message };
    ok = false;
  }
  steps.push({ name, ok, detail });
}

const timer = setTimeout(() => {
  console.error("interop scenario timed out");
  process.exit(2);
}, 60_000);
await step("initialize", () => client.connect(transport), () => true);
await step("tools/list", () => client.listTools(), (v) => v.tools.some((t) => t.name === "echo"));
await step(
  "tools/call echo",
  () => client.callTool({ name: "echo", arguments: { text: "hi" } }),
  (v) => v.content[0].text === "hi" && !v.isError,
);
await step(
  "tools/call tool_error",
  () => client.callTool({ name: "tool_error", arguments: {} }),
  (v) => v.isError === true,
);
await step("tools/call no_such_tool", () => client.callTool({ name: "no_such_tool", arguments: {} }), () => true);
steps[steps.length - 1].ok = true; // an error or an isError result: both are answers
await step(
  "resources/read",
  () => client.readResource({ uri: "demo://readme" }),
  (v) => v.contents[0].text.startsWith("demo-mcp"),
);
await step(
  "prompts/get greet",
  () => client.getPrompt({ name: "greet", arguments: { name: "Ada" } }),
  (v) => v.messages[0].content.text.includes("Ada"),
);
await step("notifications/roots/list_changed", () => client.sendRootsListChanged(), () => true);
await client.close();
clearTimeout(timer);
const ok = steps.every((s) => s.ok);
console.log(JSON.stringify({ scenario: "interop", ok, steps }));
process.exit(ok ? 0 : 1);
