//! What the tansync agent and the reference NHS Directory both speak: identifier types,
//! the NHS Directory model types they share (person fields, organisations, account
//! status), the SCIM 2.0 wire types, the NHS extension schema and the directory
//! snapshot format, and [`text`], which characters a stored value may hold.
//!
//! Plain data with parsing and display (and [`escape`], the one way a value reaches a
//! terminal); nothing here does I/O.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod escape;
pub mod field;
pub mod fieldmap;
pub mod ids;
pub mod org;
pub mod portal;
pub mod redact;
pub mod schema;
pub mod scim;
pub mod snapshot;
pub mod status;
pub mod text;

pub use field::Field;
pub use fieldmap::FieldMap;
pub use org::{OrgKind, Organisation};
pub use status::Status;
