// The route table on its own: the default routes map as the sidecar's
// forward-auth table does, unsafe paths are refused, context values are
// typed, and a table that cannot work is refused when it is built.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RouteTable, defaultRoutes, type Route } from "../src/index.js";
import { ContextError, UnsafePathError, buildContext } from "../src/routes.js";

const table = new RouteTable();

describe("route table", () => {
  it("maps the document-search API like the forward-auth defaults", () => {
    const cases: [string, string, string, string | undefined][] = [
      ["GET", "/documents/q3-report", "Read", "q3-report"],
      ["HEAD", "/documents/q3-report", "Read", "q3-report"],
      ["PUT", "/documents/q3-report", "Update", "q3-report"],
      ["PATCH", "/documents/q3-report", "Update", "q3-report"],
      ["DELETE", "/documents/q3-report", "Delete", "q3-report"],
      ["POST", "/documents/q3-report/shares", "Share", "q3-report"],
      ["POST", "/documents/q3-report/restore", "Restore", "q3-report"],
      ["POST", "/documents", "CreateDocument", undefined],
      ["GET", "/search?q=x", "Search", undefined],
      ["POST", "/search", "Search", undefined],
      ["GET", "/tenants/acme/usage", "ViewUsage", "acme"],
      ["GET", "/tenants/acme/audit-logs", "ViewAuditLogs", "acme"],
      ["POST", "/tenants/acme/export", "Export", "acme"],
      ["PUT", "/tenants/acme", "ManageTenant", "acme"],
    ];
    for (const [method, path, action, id] of cases) {
      const m = table.resolve(method, path);
      assert.ok(m, `${method} ${path}`);
      assert.equal(m.route.action, action);
      assert.equal(m.route.resourceId === undefined ? undefined : m.params[m.route.resourceId], id);
    }
    assert.equal(defaultRoutes.length, cases.length);
  });

  it("maps nothing else", () => {
    for (const [method, path] of [
      ["GET", "/documents"],
      ["POST", "/documents/x"],
      ["GET", "/documents/x/shares"],
      ["GET", "/documents/"],
      ["GET", "/Documents/x"],
      ["GET", "/documents/x/"],
      ["DELETE", "/tenants/acme"],
      ["GET", "/"],
    ] as const) {
      assert.equal(table.resolve(method, path), null, `${method} ${path}`);
    }
  });

  it("decodes ids and refuses dot segments, encoded slashes and bad escapes", () => {
    assert.equal(table.resolve("GET", "/documents/a%20b")?.params.docId, "a b");
    for (const path of ["/documents/..", "/documents/%2e%2E", "/documents/a%2Fb", "/documents/a%5Cb", "/documents/%E0%A4%A"]) {
      assert.throws(() => table.resolve("GET", path), UnsafePathError, path);
    }
  });

  it("types context values from headers and the query", () => {
    const route: Route = {
      method: "GET",
      path: "/x",
      action: "Search",
      resource: "Tenant",
      context: { n: { query: "n", type: "long" }, b: { header: "X-B", type: "bool" }, s: { header: "x-s", default: "d" } },
    };
    const headers: Record<string, string> = { "x-b": "true" };
    assert.deepEqual(buildContext(route, (h) => headers[h], new URLSearchParams("n=42")), { n: 42, b: true, s: "d" });
    assert.throws(() => buildContext(route, (h) => headers[h], new URLSearchParams("n=4.2")), ContextError);
    assert.throws(() => buildContext(route, () => undefined, new URLSearchParams("n=1")), ContextError);
  });

  it("refuses routes that cannot work", () => {
    const bad: Route[] = [
      { method: "GET", path: "/documents/{docId}", action: "Read", resource: "Document" },
      { method: "GET", path: "/documents/{docId}", action: "Read", resource: "Document", resourceId: "id" },
      { method: "GET", path: "documents", action: "Search", resource: "Tenant" },
      { method: "GET", path: "/s", action: "Search", resource: "Tenant", context: { a: {} } },
    ];
    for (const r of bad) assert.throws(() => new RouteTable([r]), Error, JSON.stringify(r));
  });
});
