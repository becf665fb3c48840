// What the Express and Lambda middleware share: a request's route → action
// and resource, one decision from the sidecar for the request's bearer
// token, and the answer — the verified tenant context on Allow, a 401, 403
// or 400 with a message safe for the end user otherwise, and 503 whenever
// no decision can be had (fail closed: the handler never runs).

import type { CedargateClient } from "./client.js";
import { BadRequestError, UnauthorizedError } from "./errors.js";
import { ContextError, RouteTable, UnsafePathError, buildContext, type Route } from "./routes.js";
import type { Action, Decision, Resource } from "./types.js";

/** The sidecar's text for a Deny whose forbids carry no message. */
export const DEFAULT_DENY_MESSAGE = "You do not have permission to do this.";
const UNAVAILABLE_MESSAGE = "Authorization is unavailable; try again later.";

/** Token claims read for the request context (the sidecar's defaults). */
export interface ClaimNames {
  /** Default `custom:tenant_id` (the sidecar's `--tenant-claim`). */
  tenant?: string;
  /** Default `cognito:groups`. */
  groups?: string;
  /** Default `custom:clearance`. */
  clearance?: string;
}

export interface GuardOptions {
  client: CedargateClient;
  /** Default: the document-search API (`defaultRoutes`). */
  routes?: readonly Route[];
  /**
   * A request no route matches: `deny` (403, the default), or `pass` (the
   * handler runs without a tenant context; for public routes only).
   */
  unmapped?: "deny" | "pass";
  claims?: ClaimNames;
}

/** The caller, from a token the sidecar has verified. */
export interface CedargateUser {
  id: string;
  tenant: string;
  groups: string[];
  clearance: number;
}

/** What a handler may trust once the middleware let a request through. */
export interface AuthContext {
  tenant: string;
  user: CedargateUser;
  /** The decision's id: its audit record's `eventId`. Log it. */
  decisionId: string;
  decision: Decision;
  action: Action;
  resource: Resource;
  /** The request id sent to the sidecar (the caller's `X-Request-Id`, or a new one). */
  requestId: string;
}

/** One incoming request, whatever the framework. */
export interface GuardRequest {
  method: string;
  /** The raw path, query string allowed. */
  path: string;
  /** A header by lower-case name. */
  header(name: string): string | undefined;
  clientIp?: string | undefined;
}

export interface Refusal {
  status: number;
  headers: Record<string, string>;
  body: { error: { code: string; message: string } };
}

export type Verdict = { allowed: true; auth: AuthContext | null } | { allowed: false; refusal: Refusal };

export class Guard {
  private readonly client: CedargateClient;
  private readonly table: RouteTable;
  private readonly unmapped: "deny" | "pass";
  private readonly claims: Required<ClaimNames>;

  constructor(opts: GuardOptions) {
    this.client = opts.client;
    this.table = new RouteTable(opts.routes);
    this.unmapped = opts.unmapped ?? "deny";
    this.claims = {
      tenant: opts.claims?.tenant ?? "custom:tenant_id",
      groups: opts.claims?.groups ?? "cognito:groups",
      clearance: opts.claims?.clearance ?? "custom:clearance",
    };
  }

  async check(req: GuardRequest): Promise<Verdict> {
    let matched;
    try {
      matched = this.table.resolve(req.method, req.path);
    } catch (e) {
      if (e instanceof UnsafePathError) return refuse(400, "invalid_path", e.message);
      throw e;
    }
    if (!matched) {
      return this.unmapped === "pass" ? { allowed: true, auth: null } : forbidden(DEFAULT_DENY_MESSAGE);
    }
    const token = bearer(req.header("authorization"));
    if (token === undefined) return unauthorized("missing_token", "no bearer token", 'Bearer realm="cedargate"');
    const claims = decodeClaims(token);
    if (!claims) return unauthorized("invalid_token", "malformed token", 'Bearer realm="cedargate", error="invalid_token"');
    const user = this.user(claims);

    const { route, params } = matched;
    const id = route.resourceId !== undefined ? params[route.resourceId] : user.tenant;
    if (id === undefined || id === "") {
      return unauthorized("invalid_token", "the token names no tenant", 'Bearer realm="cedargate", error="invalid_token"');
    }
    let context;
    try {
      const query = new URLSearchParams(req.path.includes("?") ? req.path.slice(req.path.indexOf("?") + 1) : "");
      context = buildContext(route, (name) => req.header(name), query);
    } catch (e) {
      if (e instanceof ContextError) return refuse(400, "invalid_request", e.message);
      throw e;
    }
    const resource: Resource = { type: route.resource, id };
    const requestId = req.header("x-request-id") ?? crypto.randomUUID();

    let decision: Decision;
    try {
      decision = await this.client.authorize(
        { action: route.action, resource, context },
        { token, requestId, clientIp: req.clientIp, userAgent: req.header("user-agent") },
      );
    } catch (e) {
      if (e instanceof UnauthorizedError) {
        return unauthorized(e.code, e.message, e.wwwAuthenticate ?? 'Bearer realm="cedargate"');
      }
      if (e instanceof BadRequestError) return refuse(400, e.code, e.message);
      // Unreachable, timed out, 5xx, anything unexpected: no decision, so no.
      return refuse(503, "authorization_unavailable", UNAVAILABLE_MESSAGE, { "retry-after": "1" });
    }
    if (decision.decision !== "Allow") {
      if (decision.reason === "store_unavailable") {
        return refuse(503, "authorization_unavailable", UNAVAILABLE_MESSAGE, {
          "retry-after": "1",
          "x-decision-id": decision.decision_id,
        });
      }
      const refusal = forbidden(decision.message ?? DEFAULT_DENY_MESSAGE);
      refusal.refusal.headers["x-decision-id"] = decision.decision_id;
      return refusal;
    }
    return {
      allowed: true,
      auth: {
        tenant: user.tenant,
        user,
        decisionId: decision.decision_id,
        decision,
        action: route.action,
        resource,
        requestId,
      },
    };
  }

  private user(claims: Record<string, unknown>): CedargateUser {
    const groups = claims[this.claims.groups];
    const clearance = Number(claims[this.claims.clearance] ?? 0);
    return {
      id: typeof claims.sub === "string" ? claims.sub : "",
      tenant: typeof claims[this.claims.tenant] === "string" ? (claims[this.claims.tenant] as string) : "",
      groups: Array.isArray(groups) ? groups.filter((g): g is string => typeof g === "string") : [],
      clearance: Number.isInteger(clearance) ? clearance : 0,
    };
  }
}

function refuse(status: number, code: string, message: string, headers: Record<string, string> = {}): Verdict {
  return { allowed: false, refusal: { status, headers, body: { error: { code, message } } } };
}

/** The 403 the sidecar's forward-auth sends, with the same message header. */
function forbidden(message: string): { allowed: false; refusal: Refusal } {
  return {
    allowed: false,
    refusal: {
      status: 403,
      headers: { "x-cedargate-reason": message },
      body: { error: { code: "forbidden", message } },
    },
  };
}

function unauthorized(code: string, message: string, challenge: string): Verdict {
  return refuse(401, code, message, { "www-authenticate": challenge });
}

function bearer(header: string | undefined): string | undefined {
  const m = /^Bearer[ ]+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header ?? "");
  return m?.[1];
}

/**
 * The claims of a JWT, read without checking its signature: they are used
 * only once the sidecar has verified the same token, and the tenant of a
 * route without a tenant id is checked by that decision.
 */
function decodeClaims(token: string): Record<string, unknown> | null {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined) return null;
  try {
    const json: unknown = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
    return json !== null && typeof json === "object" && !Array.isArray(json) ? (json as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
