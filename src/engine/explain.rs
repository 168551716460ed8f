//! `explain`: one person's way through a plan — the same read, rules, mapping, diff and
//! gate as `plan`, with the results for that person recorded as they are computed
//! ([`super::read::Captured`]), and the plan's entries for their anchor.

use super::plan::plan_from;
use super::read::{Captured, Who};
use super::{EngineError, Progress};
use crate::config::Config;
use crate::model::Rejection;
use crate::plan::{Blocked, PlannedOp, WriteBack};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Everything known about one person's decision.
#[derive(Debug)]
pub struct Explanation {
    pub captured: Captured,
    pub operations: Vec<PlannedOp>,
    pub blocked: Vec<Blocked>,
    pub rejected: Vec<Rejection>,
    pub write_back: Vec<WriteBack>,
}

/// Why there is nothing to explain.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "no source entry matches {0:?} (searched sAMAccountName, uid, userPrincipalName, DN and objectGUID)"
    )]
    NotFound(String),
    #[error("{} entries match {who:?}; use the DN or objectGUID: {}", dns.len(), dns.join("; "))]
    Ambiguous { who: String, dns: Vec<String> },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub async fn explain(
    cfg: &Config,
    who_text: &str,
    now: OffsetDateTime,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Explanation, ExplainError> {
    let who = Who::parse(who_text);
    let mut run = plan_from(
        cfg,
        &cfg.source,
        &cfg.target,
        now,
        Some(&who),
        progress,
        cancel,
    )
    .await?;
    let captured = match run.collected.captured.len() {
        0 => return Err(ExplainError::NotFound(who_text.to_string())),
        1 => run.collected.captured.remove(0),
        _ => {
            return Err(ExplainError::Ambiguous {
                who: who_text.to_string(),
                dns: run
                    .collected
                    .captured
                    .iter()
                    .map(|c| c.entry.dn.clone())
                    .collect(),
            });
        }
    };
    let plan = run.plan;
    let Ok(x) = captured.entry.anchor.clone() else {
        return Ok(Explanation {
            captured,
            operations: vec![],
            blocked: vec![],
            rejected: vec![],
            write_back: vec![],
        });
    };
    Ok(Explanation {
        operations: plan
            .operations
            .into_iter()
            .filter(|p| p.op.external_id() == &x)
            .collect(),
        blocked: plan
            .blocked
            .into_iter()
            .filter(|b| b.external_id == x)
            .collect(),
        rejected: plan
            .rejected
            .into_iter()
            .filter(|r| r.external_id.as_ref() == Some(&x))
            .collect(),
        write_back: plan
            .write_back
            .into_iter()
            .filter(|w| w.external_id == x)
            .collect(),
        captured,
    })
}
