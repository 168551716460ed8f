//! tansync — synchronises people from an organisation's Active Directory into the NHS
//! Directory (NHSmail).
//!
//! The module tree is the pipeline (see `ARCHITECTURE.md`):
//! `source` → `filter` → `model` → `diff` → `gate` → `plan` → `push` → `state`, with
//! `target` supplying the directory's actual state; [`engine`] runs them as whole plan and
//! apply runs, and [`cli`] is a front end over the engine. `diff` and `gate` are pure; I/O
//! lives in `source`, `target`, `push` and `state`. Planning code never holds a
//! write-capable client: a dry run is structural.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod diff;
pub mod engine;
pub mod error_text;
pub mod filter;
pub mod gate;
pub mod model;
pub mod plan;
pub mod push;
pub mod source;
pub mod state;
pub mod target;
#[cfg(test)]
pub mod testing;
pub mod timefmt;
pub mod tls;
pub mod toml_error;

/// Identifier newtypes and SCIM wire types, shared with the reference directory.
pub use nhs_model::{ids, scim};
