//! Integration tests: one test binary, one module per concern.

mod binaries;
mod forward_auth;
mod helpers;
mod http;
mod isolation_prop;
mod nginx;
mod policy_table;
mod reload;
mod tokens;
