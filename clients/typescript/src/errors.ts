// Typed errors. Every error body of cedargate is {"error": {code, message}};
// one class per kind of status, so a caller can tell "you may not" from "try
// again later" with instanceof, and the code and status are kept.

export interface ErrorBody {
  error: { code: string; message: string; fields?: string[]; problems?: string[] };
}

export class CedargateError extends Error {
  /** The HTTP status, or 0 when no response came. */
  readonly status: number;
  /** cedargate's error code (`invalid_token`, `fields_forbidden`, …). */
  readonly code: string;
  /** The request's fields at fault (403 `fields_forbidden`). */
  readonly fields: string[] | undefined;
  /** What is wrong with a tenant policy (400 `invalid_policy`): `policyId:line:column: message`. */
  readonly problems: string[] | undefined;
  /** How many attempts were made before giving up. */
  readonly attempts: number;

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { fields?: string[] | undefined; problems?: string[] | undefined; attempts?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.fields = opts.fields;
    this.problems = opts.problems;
    this.attempts = opts.attempts ?? 1;
  }
}

/** 400, 413, 422: the request is wrong; sending it again will not help. */
export class BadRequestError extends CedargateError {}
/** 401: no token, or a token the service does not accept. */
export class UnauthorizedError extends CedargateError {
  /** The `WWW-Authenticate` challenge the service sent. */
  wwwAuthenticate: string | undefined;
}
/** 403: the policies refuse the operation. */
export class ForbiddenError extends CedargateError {}
/** 404: no such record (or another tenant's: they read the same). */
export class NotFoundError extends CedargateError {}
/** 409, 410, 412, 428: the record is not in the state the request needs. */
export class ConflictError extends CedargateError {}
/** 503, or no answer at all: the service cannot decide now. Fail closed. */
export class UnavailableError extends CedargateError {}
/** No answer within the time allowed. */
export class TimeoutError extends UnavailableError {}

/** The error for an error response; `text` is its body. */
export function errorFromResponse(
  status: number,
  text: string,
  headers: Headers,
  attempts: number,
): CedargateError {
  let code = `http_${status}`;
  let message = text.slice(0, 500) || `HTTP ${status}`;
  let fields: string[] | undefined;
  let problems: string[] | undefined;
  try {
    const body = JSON.parse(text) as {
      error?: { code?: unknown; message?: unknown; fields?: unknown; problems?: unknown };
    } | null;
    const error = body?.error;
    if (error && typeof error.code === "string" && typeof error.message === "string") {
      code = error.code;
      message = error.message;
      fields = strings(error.fields);
      problems = strings(error.problems);
    }
  } catch {
    // Not JSON (a proxy's page): the status and the start of the text.
  }
  const opts = { fields, problems, attempts };
  if (status === 401) {
    const e = new UnauthorizedError(status, code, message, opts);
    e.wwwAuthenticate = headers.get("www-authenticate") ?? undefined;
    return e;
  }
  if (status === 403) return new ForbiddenError(status, code, message, opts);
  if (status === 404) return new NotFoundError(status, code, message, opts);
  if ([409, 410, 412, 428].includes(status)) return new ConflictError(status, code, message, opts);
  if (status === 503 || status === 502 || status === 504) {
    return new UnavailableError(status, code, message, opts);
  }
  if (status >= 400 && status < 500) return new BadRequestError(status, code, message, opts);
  return new CedargateError(status, code, message, opts);
}

/** The strings of a JSON array; undefined if it is not one. */
function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : undefined;
}
