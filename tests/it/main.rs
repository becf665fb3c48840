//! Integration tests: one test binary, one module per concern.

mod helpers;
mod isolation_prop;
mod policy_table;
