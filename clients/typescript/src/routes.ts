// The route table of the middleware: which (method, path template) of the
// application is which (action, resource, context). It mirrors the sidecar's
// forward-auth table (src/sidecar/forward.rs): the default is the
// document-search API, a route names the path parameter that is the
// resource id, and context values come from headers or query parameters.

import type { Action, ResourceType } from "./types.js";

/** Where one context value comes from. */
export interface ContextSource {
  header?: string;
  query?: string;
  /** Default `string`. */
  type?: "string" | "long" | "bool";
  /** Used when the request has no such header or parameter. */
  default?: string;
}

export interface Route {
  /** An HTTP method, or `*` for any. */
  method: string;
  /** A path template: `/documents/{docId}`. */
  path: string;
  action: Action;
  resource: ResourceType;
  /**
   * The path parameter holding the resource id. Required for documents;
   * for a tenant, absent means the caller's own tenant.
   */
  resourceId?: string;
  context?: Record<string, ContextSource>;
}

/** The routes of the reference document-search API. */
export const defaultRoutes: readonly Route[] = Object.freeze([
  { method: "GET", path: "/documents/{docId}", action: "Read", resource: "Document", resourceId: "docId" },
  { method: "HEAD", path: "/documents/{docId}", action: "Read", resource: "Document", resourceId: "docId" },
  { method: "PUT", path: "/documents/{docId}", action: "Update", resource: "Document", resourceId: "docId" },
  { method: "PATCH", path: "/documents/{docId}", action: "Update", resource: "Document", resourceId: "docId" },
  { method: "DELETE", path: "/documents/{docId}", action: "Delete", resource: "Document", resourceId: "docId" },
  { method: "POST", path: "/documents/{docId}/shares", action: "Share", resource: "Document", resourceId: "docId" },
  { method: "POST", path: "/documents/{docId}/restore", action: "Restore", resource: "Document", resourceId: "docId" },
  {
    method: "POST",
    path: "/documents",
    action: "CreateDocument",
    resource: "Tenant",
    context: {
      fileType: { header: "x-file-type" },
      sizeBytes: { header: "content-length", type: "long", default: "0" },
    },
  },
  { method: "GET", path: "/search", action: "Search", resource: "Tenant" },
  { method: "POST", path: "/search", action: "Search", resource: "Tenant" },
  { method: "GET", path: "/tenants/{tenantId}/usage", action: "ViewUsage", resource: "Tenant", resourceId: "tenantId" },
  {
    method: "GET",
    path: "/tenants/{tenantId}/audit-logs",
    action: "ViewAuditLogs",
    resource: "Tenant",
    resourceId: "tenantId",
  },
  { method: "POST", path: "/tenants/{tenantId}/export", action: "Export", resource: "Tenant", resourceId: "tenantId" },
  { method: "PUT", path: "/tenants/{tenantId}", action: "ManageTenant", resource: "Tenant", resourceId: "tenantId" },
] satisfies Route[]);

/** A path with a `.` or `..` segment, an encoded slash, or bad escapes. */
export class UnsafePathError extends Error {}

/** A context value that is missing or not of its type. */
export class ContextError extends Error {}

export interface Matched {
  route: Route;
  params: Record<string, string>;
}

interface Compiled {
  route: Route;
  method: string;
  /** A literal segment, or `{ param }`. */
  segments: (string | { param: string })[];
  literals: number;
}

export class RouteTable {
  private readonly compiled: Compiled[];

  constructor(routes: readonly Route[] = defaultRoutes) {
    this.compiled = routes.map((route) => compile(route));
  }

  /** The route for `method` and the raw (still percent-encoded) path; null if none. */
  resolve(method: string, rawPath: string): Matched | null {
    const path = rawPath.split("?")[0] ?? "";
    const segments = path.split("/").map((s) => decodeSegment(s));
    const m = method.toUpperCase();
    let best: { c: Compiled; params: Record<string, string> } | null = null;
    for (const c of this.compiled) {
      if (c.method !== "*" && c.method !== m) continue;
      if (c.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      const ok = c.segments.every((want, i) => {
        const got = segments[i] ?? "";
        if (typeof want === "string") return want === got;
        if (got === "") return false;
        params[want.param] = got;
        return true;
      });
      // The most literal match wins; among equals, the first route.
      if (ok && (!best || c.literals > best.c.literals || (best.c.method === "*" && c.method !== "*"))) {
        best = { c, params };
      }
    }
    return best ? { route: best.c.route, params: best.params } : null;
  }
}

/** The context object of a matched route, from the request's headers and query. */
export function buildContext(
  route: Route,
  header: (name: string) => string | undefined,
  query: URLSearchParams,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, src] of Object.entries(route.context ?? {})) {
    const raw = (src.header !== undefined ? header(src.header.toLowerCase()) : query.get(src.query ?? "")) ?? src.default;
    if (raw === undefined) throw new ContextError(`context value ${name} is missing`);
    switch (src.type ?? "string") {
      case "string":
        out[name] = raw;
        break;
      case "long": {
        const t = raw.trim();
        if (!/^-?\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
          throw new ContextError(`context value ${name} is not an integer`);
        }
        out[name] = Number(t);
        break;
      }
      case "bool": {
        const t = raw.trim();
        if (t !== "true" && t !== "false") throw new ContextError(`context value ${name} is not true or false`);
        out[name] = t === "true";
        break;
      }
    }
  }
  return out;
}

function compile(route: Route): Compiled {
  const at = `route ${route.method} ${route.path}`;
  if (!route.path.startsWith("/")) throw new Error(`${at}: the path must start with /`);
  const segments = route.path.split("/").map((s) => {
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(s);
    return m?.[1] !== undefined ? { param: m[1] } : s;
  });
  const params = segments.flatMap((s) => (typeof s === "string" ? [] : [s.param]));
  if (route.resource === "Document" && route.resourceId === undefined) {
    throw new Error(`${at}: a Document route needs resourceId`);
  }
  if (route.resourceId !== undefined && !params.includes(route.resourceId)) {
    throw new Error(`${at}: resourceId ${route.resourceId} is not a path parameter`);
  }
  for (const [name, src] of Object.entries(route.context ?? {})) {
    if ((src.header === undefined) === (src.query === undefined)) {
      throw new Error(`${at}: context ${name} needs exactly one of header or query`);
    }
  }
  return {
    route,
    method: route.method.toUpperCase(),
    segments,
    literals: segments.filter((s) => typeof s === "string").length,
  };
}

function decodeSegment(s: string): string {
  let d: string;
  try {
    d = decodeURIComponent(s);
  } catch {
    throw new UnsafePathError("bad percent escape in the path");
  }
  if (d === "." || d === ".." || d.includes("/") || d.includes("\\")) {
    throw new UnsafePathError("the path has a `.` or `..` segment or an encoded slash");
  }
  return d;
}
