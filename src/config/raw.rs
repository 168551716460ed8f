//! Raw configuration as written in TOML. Unknown keys are errors.

use crate::gate::default_ineligible_domains;
use crate::plan::MatchKey;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub agent_id: String,
    pub source: RawSource,
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    pub filters: RawFilters,
    pub target: RawTarget,
    pub agreements: RawAgreements,
    #[serde(default)]
    pub matching: RawMatching,
    #[serde(default)]
    pub eligibility: RawEligibility,
    #[serde(default)]
    pub safety: RawSafety,
    #[serde(default)]
    pub push: RawPush,
    #[serde(default)]
    pub state: RawState,
    pub write_back: Option<RawWriteBack>,
    #[serde(default)]
    pub daemon: RawDaemon,
}

/// `[daemon]`: continuous mode, and the logging every command uses.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    // The cycle loop's keys (schedule, standby, notification).
    pub interval_seconds: Option<i64>,
    pub cron: Option<String>,
    pub full_every_hours: Option<i64>,
    pub standby: bool,
    pub notify_command: Option<Vec<String>>,
    // Observability: health, metrics and logs.
    pub listen: Option<String>,
    pub healthy_within: Option<u64>,
    pub log_format: String,
    pub log_personal_data: bool,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            interval_seconds: None,
            cron: None,
            full_every_hours: None,
            standby: false,
            notify_command: None,
            listen: None,
            healthy_within: None,
            log_format: "text".into(),
            log_personal_data: false,
        }
    }
}

/// Opt-in: write the NHSmail address the directory allocated back to AD.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWriteBack {
    pub attribute: String,
    /// Its own write credential, so the source's bind can stay read-only.
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    /// A systemd credential name (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    pub bind_password_credential: Option<String>,
    /// Entries it may write to (default: the source's base DNs).
    pub base_dns: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawPush {
    pub rate_per_second: u32,
    pub burst: Option<u32>,
    pub org_rate_per_second: Option<u32>,
    pub org_burst: Option<u32>,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_secs: u64,
    pub quarantine_after: u32,
}

impl Default for RawPush {
    fn default() -> Self {
        Self {
            rate_per_second: 10,
            burst: None,
            org_rate_per_second: None,
            org_burst: None,
            concurrency: 8,
            max_attempts: 5,
            backoff_base_ms: 200,
            backoff_max_secs: 30,
            quarantine_after: 3,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawState {
    pub dir: String,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            dir: "state".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum RawSource {
    Ldap(Box<RawLdap>),
    Ldif(RawLdif),
}

fn default_anchor() -> String {
    "objectGUID".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLdif {
    pub path: String,
    #[serde(default = "default_anchor")]
    pub anchor: String,
    #[serde(default = "default_person_classes")]
    pub person_classes: Vec<String>,
    #[serde(default = "default_exclude_classes")]
    pub exclude_classes: Vec<String>,
    /// Signed, as TOML integers are: a negative value is then reported by the
    /// validation, which names the key (serde's error inside the tagged enum does not).
    #[serde(default = "default_ldif_max_value")]
    pub ldif_max_value_bytes: i64,
}

fn default_ldif_max_value() -> i64 {
    crate::source::ldif::DEFAULT_MAX_VALUE_BYTES as i64
}

fn default_person_classes() -> Vec<String> {
    vec!["user".into(), "inetOrgPerson".into()]
}
fn default_exclude_classes() -> Vec<String> {
    vec!["computer".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLdap {
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    pub ca_file: Option<String>,
    /// `simple` (bind_dn + password) or `kerberos` (keytab + principal).
    #[serde(default = "default_auth")]
    pub auth: String,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    /// A systemd credential name (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    pub bind_password_credential: Option<String>,
    pub keytab: Option<String>,
    /// The keytab as a systemd credential (`LoadCredential=`), instead of `keytab`.
    pub keytab_credential: Option<String>,
    pub principal: Option<String>,
    pub sasl_host: Option<String>,
    pub base_dns: Vec<String>,
    #[serde(default = "default_filter")]
    pub filter: String,
    #[serde(default = "default_group_filter")]
    pub group_filter: String,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
    #[serde(default)]
    pub allow_cleartext_bind: bool,
    #[serde(default = "default_anchor")]
    pub anchor: String,
    #[serde(default = "default_nested")]
    pub nested_groups: String,
}

fn default_auth() -> String {
    "simple".into()
}
fn default_filter() -> String {
    "(&(objectCategory=person)(objectClass=user))".into()
}
fn default_group_filter() -> String {
    "(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))".into()
}
fn default_page_size() -> i32 {
    500
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_operation_timeout() -> u64 {
    120
}
fn default_nested() -> String {
    "in_chain".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilters {
    pub files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum RawTarget {
    Snapshot(RawSnapshot),
    Scim(RawScim),
    PortalReport(RawPortal),
}

/// `[target] kind = "portal_report"`: the NHSmail Portal's CSV files.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPortal {
    pub report: Option<String>,
    pub drop_dir: Option<String>,
    pub organisations_file: Option<String>,
    pub organisations: Option<Vec<crate::model::Organisation>>,
    pub out_dir: Option<String>,
    pub template: Option<String>,
    /// Signed, so a negative value is reported naming the key.
    pub batch_size: Option<i64>,
    pub results_column: Option<String>,
    pub success_values: Option<Vec<String>>,
    #[serde(default)]
    pub report_columns: BTreeMap<String, String>,
    #[serde(default)]
    pub upload_columns: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnapshot {
    pub path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScim {
    pub url: String,
    pub token_file: Option<String>,
    pub token_env: Option<String>,
    /// A systemd credential name (`LoadCredential=`), read from `$CREDENTIALS_DIRECTORY`.
    pub token_credential: Option<String>,
    pub ca_file: Option<String>,
    #[serde(default = "default_scim_page")]
    pub page_size: usize,
    #[serde(default = "default_scim_timeout")]
    pub timeout_secs: u64,
    pub organisations_file: Option<String>,
}

fn default_scim_page() -> usize {
    200
}
fn default_scim_timeout() -> u64 {
    30
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgreements {
    pub file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatching {
    pub soft_match: Vec<MatchKey>,
}

impl Default for RawMatching {
    fn default() -> Self {
        Self {
            soft_match: vec![MatchKey::EmployeeId, MatchKey::Email],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEligibility {
    #[serde(default = "default_ineligible_domains")]
    pub ineligible_domains: Vec<String>,
    #[serde(default = "default_nhsmail_domain")]
    pub nhsmail_domain: String,
}

fn default_nhsmail_domain() -> String {
    "nhs.net".into()
}

impl Default for RawEligibility {
    fn default() -> Self {
        Self {
            ineligible_domains: default_ineligible_domains(),
            nhsmail_domain: default_nhsmail_domain(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSafety {
    #[serde(default = "d_max_removals")]
    pub max_removals: usize,
    #[serde(default = "d_max_pct")]
    pub max_removal_percent: f64,
    #[serde(default = "d_pct_from")]
    pub percent_applies_from: usize,
    #[serde(default)]
    pub allow_empty_source: bool,
    #[serde(default = "d_cap")]
    pub default_account_cap: u32,
    #[serde(default = "d_window")]
    pub restore_window_days: i64,
    /// Read secret files that group or others may read too (refused by default).
    #[serde(default)]
    pub allow_insecure_secret_files: bool,
}

fn d_max_removals() -> usize {
    50
}
fn d_max_pct() -> f64 {
    10.0
}
fn d_pct_from() -> usize {
    100
}
fn d_cap() -> u32 {
    50
}
fn d_window() -> i64 {
    30
}

impl Default for RawSafety {
    fn default() -> Self {
        Self {
            max_removals: d_max_removals(),
            max_removal_percent: d_max_pct(),
            percent_applies_from: d_pct_from(),
            allow_empty_source: false,
            default_account_cap: d_cap(),
            restore_window_days: d_window(),
            allow_insecure_secret_files: false,
        }
    }
}
