// Middleware for Lambda handlers behind API Gateway HTTP APIs (payload
// format 2.0): the same decision as the Express middleware, from the
// event's route, headers and source address. The wrapped handler runs only
// on Allow, and gets the verified tenant context as its third argument.

import { Guard, type AuthContext, type GuardOptions } from "./guard.js";

/** The parts of an API Gateway v2 event the middleware reads. */
export interface HttpApiEvent {
  rawPath: string;
  rawQueryString?: string;
  headers?: Record<string, string | undefined>;
  body?: string;
  isBase64Encoded?: boolean;
  requestContext: {
    http: { method: string; sourceIp?: string };
  };
}

/** An API Gateway v2 structured result. */
export interface HttpApiResult {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

export type GuardedHandler<E, C, R> = (event: E, context: C, auth: AuthContext | null) => Promise<R>;

/**
 * Wraps `handler`: `export const handler = withCedargate({ client }, async (event, ctx, auth) => …)`.
 * `auth` is null only for unmapped routes with `unmapped: "pass"`.
 */
export function withCedargate<E extends HttpApiEvent, C, R>(
  opts: GuardOptions,
  handler: GuardedHandler<E, C, R>,
): (event: E, context: C) => Promise<R | HttpApiResult> {
  const guard = new Guard(opts);
  return async (event, context) => {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(event.headers ?? {})) {
      if (v !== undefined) headers[k.toLowerCase()] = v;
    }
    if (headers["content-length"] === undefined && event.body !== undefined) {
      const encoding = event.isBase64Encoded ? "base64" : "utf8";
      headers["content-length"] = String(Buffer.byteLength(event.body, encoding));
    }
    const query = event.rawQueryString ? `?${event.rawQueryString}` : "";
    const verdict = await guard.check({
      method: event.requestContext.http.method,
      path: event.rawPath + query,
      header: (name) => headers[name],
      clientIp: event.requestContext.http.sourceIp,
    });
    if (!verdict.allowed) {
      const { status, headers: h, body } = verdict.refusal;
      return {
        statusCode: status,
        headers: { ...h, "content-type": "application/json", "cache-control": "no-store" },
        body: JSON.stringify(body),
      };
    }
    return handler(event, context, verdict.auth);
  };
}
