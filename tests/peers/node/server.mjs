// An MCP server built with the official TypeScript SDK (@modelcontextprotocol/sdk), for the
// interop tests (tests/e2e_interop.rs):
//
//     node server.mjs --transport sse|streamable-http|streamable-http-json --port N
//
// The same surface as the rmcp demo server and the Python peer: tools `echo` and `tool_error`
// (a result flagged isError), the resource `demo://readme`, the prompt `greet`.
import http from "node:http";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { z } from "zod";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";

const README_URI = "demo://readme";
const README_TEXT =
  "demo-mcp: a tiny MCP server used to exercise the MCP-aware Envoy filter end to end.";
const TOOL_ERROR_TEXT = "tool_error: the tool ran and reported a failure";

function newServer() {
  const server = new McpServer({ name: "typescript-interop", version: "1.0.0" });
  server.registerTool(
    "echo",
    { description: "Return the given text", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  server.registerTool(
    "tool_error",
    { description: "Always answers with a tool result flagged isError: true" },
    async () => ({ content: [{ type: "text", text: TOOL_ERROR_TEXT }], isError: true }),
  );
  server.registerResource("readme", README_URI, { mimeType: "text/plain" }, async (uri) => ({
    contents: [{ uri: uri.href, text: README_TEXT }],
  }));
  server.registerPrompt(
    "greet",
    { description: "Greet someone by name", argsSchema: { name: z.string() } },
    ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Please greet ${name} warmly.` } }],
    }),
  );
  return server;
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

function streamable(json) {
  const sessions = new Map();
  return async (req, res) => {
    const id = req.headers["mcp-session-id"];
    const body = req.method === "POST" ? await readJson(req) : undefined;
    let transport = id && sessions.get(id);
    if (!transport) {
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        enableJsonResponse: json,
        onsessioninitialized: (sid) => sessions.set(sid, transport),
      });
      await newServer().connect(transport);
    }
    await transport.handleRequest(req, res, body);
  };
}

function legacy() {
  const sessions = new Map();
  return async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (req.method === "GET" && url.pathname === "/sse") {
      const transport = new SSEServerTransport("/messages", res);
      sessions.set(transport.sessionId, transport);
      res.on("close", () => sessions.delete(transport.sessionId));
      await newServer().connect(transport);
      return;
    }
    const transport = sessions.get(url.searchParams.get("sessionId"));
    if (req.method === "POST" && url.pathname === "/messages" && transport) {
      await transport.handlePostMessage(req, res, await readJson(req));
      return;
    }
    res.writeHead(404).end();
  };
}

const { values } = parseArgs({
  options: { transport: { type: "string" }, port: { type: "string", default: "0" } },
});
const handler =
  values.transport === "sse" ? legacy() : streamable(values.transport === "streamable-http-json");
const listener = http.createServer((req, res) => {
  handler(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(500).end();
  });
});
listener.listen(Number(values.port), "127.0.0.1", () => {
  console.log(`listening ${listener.address().port}`);
});
