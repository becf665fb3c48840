//! Integration tests: one test binary, one module per concern.

mod admin;
mod admin_fields;
mod attack;
mod audit;
mod avp;
mod avp_source;
mod avp_standin;
mod binaries;
mod caddy;
mod dynamodb_local;
mod forward_auth;
mod helpers;
mod http;
mod isolation_prop;
mod keys;
mod kms_standin;
mod nginx;
mod policy_table;
mod propagation;
mod reload;
mod retention;
mod scale;
mod search;
mod store_contract;
mod store_indexes;
mod tokens;
