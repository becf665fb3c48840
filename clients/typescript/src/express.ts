// Middleware for Express, and for anything that calls (req, res, next) with
// Node's request and response (Connect, plain node:http). On Allow it sets
// `req.tenant`, `req.user`, `req.decisionId` and `req.cedargate` and calls
// `next()`; otherwise it answers itself and the handler never runs.

import type { IncomingMessage, ServerResponse } from "node:http";

import { Guard, type AuthContext, type CedargateUser, type GuardOptions } from "./guard.js";

declare global {
  // Express's request type, as Passport extends it: `req.user` is an
  // `Express.User`, here the verified caller.
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    // eslint-disable-next-line @typescript-eslint/no-empty-object-type
    interface User extends CedargateUser {}
    interface Request {
      /** The caller's tenant, from a token the sidecar verified. */
      tenant?: string;
      user?: User | undefined;
      /** The id of the decision that let this request through. */
      decisionId?: string;
      cedargate?: AuthContext;
    }
  }
}

export type NodeMiddleware = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** The Express middleware: `app.use(cedargateExpress({ client }))`. */
export function cedargateExpress(opts: GuardOptions): NodeMiddleware {
  const guard = new Guard(opts);
  return (req, res, next) => {
    const r = req as IncomingMessage & { ip?: string };
    guard
      .check({
        method: req.method ?? "GET",
        path: req.url ?? "/",
        header: (name) => {
          const v = req.headers[name];
          return Array.isArray(v) ? v[0] : v;
        },
        clientIp: r.ip ?? req.socket.remoteAddress,
      })
      .then((verdict) => {
        if (verdict.allowed) {
          if (verdict.auth) {
            Object.assign(req, {
              tenant: verdict.auth.tenant,
              user: verdict.auth.user,
              decisionId: verdict.auth.decisionId,
              cedargate: verdict.auth,
            });
          }
          next();
          return;
        }
        const { status, headers, body } = verdict.refusal;
        res.statusCode = status;
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
        res.setHeader("content-type", "application/json");
        res.setHeader("cache-control", "no-store");
        res.end(JSON.stringify(body));
      })
      .catch(next);
  };
}

/**
 * The tenant context of a request the middleware let through. Throws if it
 * did not run for this request, so a handler cannot act without it.
 */
export function authOf(req: IncomingMessage): AuthContext {
  const auth = (req as { cedargate?: AuthContext }).cedargate;
  if (!auth) throw new Error("cedargate: this request was not authorized by the middleware");
  return auth;
}
