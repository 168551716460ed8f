//! Continuous mode (`tansync run`): cycles on a schedule — a full cycle first, then delta
//! cycles, and a full reconcile at least every `full_every_hours` — each one the engine's
//! plan and apply, with the source's watermark saved only after the cycle's operations
//! have all settled. What operators see of it (health, metrics) is in [`observe`].
//!
//! It must never treat absence from a delta read as a removal, never advance a watermark
//! past a cycle that failed, and never run twice on one state directory.

pub mod http;
pub mod observe;
