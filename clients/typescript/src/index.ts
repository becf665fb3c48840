// The package's public face: the sidecar and management clients, the typed
// errors, the Express and Lambda middleware, and the Kendra search helper.

export { CedargateClient, type ClientOptions } from "./client.js";
export {
  CedargateAdmin,
  ndjsonLines,
  type Grantee,
  type OcsfEvent,
  type Page,
  type PolicyPreconditions,
  type PutPolicyResult,
  type TaggedPolicy,
  type TaggedTenant,
} from "./admin.js";
export type { CallOptions, RetryInfo, TransportOptions } from "./http.js";
export {
  BadRequestError,
  CedargateError,
  ConflictError,
  ForbiddenError,
  NotFoundError,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
} from "./errors.js";
export { RouteTable, defaultRoutes, type ContextSource, type Route } from "./routes.js";
export {
  DEFAULT_DENY_MESSAGE,
  Guard,
  type AuthContext,
  type CedargateUser,
  type ClaimNames,
  type GuardOptions,
  type GuardRequest,
  type Refusal,
  type Verdict,
} from "./guard.js";
export { authOf, cedargateExpress, type NodeMiddleware } from "./express.js";
export { withCedargate, type GuardedHandler, type HttpApiEvent, type HttpApiResult } from "./lambda.js";
export {
  KendraSearch,
  authorizedFilter,
  toSdkFilter,
  type EmptyQueryOutput,
  type KendraSearchOptions,
  type KendraSearchResult,
  type SdkAttributeFilter,
  type SdkAttributeValue,
  type SdkDocumentAttribute,
} from "./kendra.js";
export * from "./types.js";
export type { components, operations, paths } from "./generated/openapi.js";
