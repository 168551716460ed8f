//! tansync — synchronises people from an organisation's Active Directory into the NHS
//! Directory (NHSmail).
//!
//! The module tree is the pipeline (see `../shared/DESIGN.md`):
//! `source` → `filter` → `model` → `diff` → `gate` → `plan`, with `target` supplying the
//! directory's actual state. `diff` and `gate` are pure; I/O lives in `source` and `target`.
//! Planning code never holds a write-capable client: a dry run is structural.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod config;
pub mod diff;
pub mod filter;
pub mod gate;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod push;
pub mod source;
pub mod state;
pub mod target;
pub mod tls;

/// Identifier newtypes and SCIM wire types, shared with the reference directory.
pub use nhs_model::{ids, scim};
