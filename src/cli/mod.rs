//! Command line: `tansync plan`, `tansync check`, `tansync explain`.
//! Exit codes (DESIGN.md): 0 no changes, 2 changes present, 1 error.

mod apply;

use crate::config::Config;
use crate::filter::Decision;
use crate::model::mapping::map_entry;
use crate::pipeline::{self, Who};
use crate::plan::render;
use crate::source::Source;
use crate::target::Target;
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use console::style;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Parser, Debug)]
#[command(
    name = "tansync",
    version,
    about = "Synchronise people from Active Directory into the NHS Directory (NHSmail)"
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "tansync.toml",
        env = "TANSYNC_CONFIG"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what would change in the NHS Directory (changes nothing).
    /// Exit 0: no changes; 2: changes present; 1: error.
    Plan {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Also write the plan as JSON to this file (for review and `apply`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Plan as of this time (RFC 3339) instead of now: for reproducing a plan.
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
    /// Apply a reviewed plan exactly (refused if the state it started from has changed),
    /// or, without --plan, plan and apply. Exit 0: all applied; 1: anything failed.
    Apply {
        /// The plan to apply, as written by `plan --out`.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Also apply the removals the mass-change guard held, for this plan only.
        #[arg(long, value_name = "PLAN_FINGERPRINT")]
        approve_removals: Option<String>,
        #[arg(long, value_parser = parse_time, hide = true)]
        now: Option<OffsetDateTime>,
    },
    /// Plan and apply in one step (for scripts).
    Sync {
        #[arg(long, value_name = "PLAN_FINGERPRINT")]
        approve_removals: Option<String>,
        #[arg(long, value_parser = parse_time, hide = true)]
        now: Option<OffsetDateTime>,
    },
    /// Past apply/sync runs (newest first), or one run's operations.
    History {
        /// Show this run's operations.
        #[arg(long)]
        run: Option<i64>,
        /// How many runs to list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Objects held back after repeated failures.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Validate configuration, filters and agreements; connect to the source and report.
    Check,
    /// Explain the decision for one person: by sAMAccountName/uid, DN or objectGUID.
    Explain {
        who: String,
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Let the next apply try this object again.
    Clear { external_id: String },
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TANSYNC_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    // ldap3 logs connection errors that tansync reports itself.
                    "warn,ldap3=error,tansync::source::ldap=error",
                )
            }),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tansync: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{} {e:#}", style("error:").red().bold());
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    Config::load(path).with_context(|| format!("configuration {} is not valid", path.display()))
}

async fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Plan { format, out, now } => {
            let cfg = load(&cli.config)?;
            let now = now.unwrap_or_else(OffsetDateTime::now_utc);
            let run = pipeline::plan(&cfg, &cfg.target, now, None, true).await?;
            // Only the plan is needed from here: free the source and target state first.
            let plan = run.plan;
            drop(run.collected);
            drop(run.target);
            if let Some(path) = &out {
                let f = std::fs::File::create(path)
                    .with_context(|| format!("cannot write the plan to {}", path.display()))?;
                plan.write_json(f)
                    .with_context(|| format!("cannot write the plan to {}", path.display()))?;
            }
            let stdout = std::io::stdout().lock();
            match (format, &out) {
                // Same bytes as the file just written: copy rather than serialise again.
                (Format::Json, Some(path)) => {
                    let mut f = std::fs::File::open(path)?;
                    std::io::copy(&mut f, &mut std::io::BufWriter::new(stdout))?;
                }
                (Format::Json, None) => plan.write_json(stdout)?,
                (Format::Human, _) => {
                    use std::io::Write;
                    let mut stdout = stdout;
                    stdout.write_all(render::human(&plan).as_bytes())?;
                }
            }
            Ok(if plan.has_changes() { 2 } else { 0 })
        }
        Command::Check => check(&cli.config).await,
        Command::Apply {
            plan,
            approve_removals,
            now,
        } => {
            let cfg = load(&cli.config)?;
            let now = now.unwrap_or_else(OffsetDateTime::now_utc);
            apply::apply(&cfg, plan.as_deref(), approve_removals.as_deref(), now).await
        }
        Command::Sync {
            approve_removals,
            now,
        } => {
            let cfg = load(&cli.config)?;
            let now = now.unwrap_or_else(OffsetDateTime::now_utc);
            apply::apply(&cfg, None, approve_removals.as_deref(), now).await
        }
        Command::History { run, limit, format } => {
            let cfg = load(&cli.config)?;
            apply::history(&cfg, run, limit, matches!(format, Format::Json))
        }
        Command::Quarantine {
            command: QuarantineCommand::Clear { external_id },
        } => {
            let cfg = load(&cli.config)?;
            apply::clear_quarantine(&cfg, &external_id)
        }
        Command::Explain { who, now } => {
            let cfg = load(&cli.config)?;
            explain(&cfg, &who, now.unwrap_or_else(OffsetDateTime::now_utc)).await
        }
    }
}

fn ok(label: &str, text: impl std::fmt::Display) {
    println!("{} {label}: {text}", style("✓").green());
}

async fn check(path: &Path) -> Result<u8> {
    let cfg = load(path)?;
    ok("configuration", path.display());
    ok(
        "filters",
        format!(
            "{} rules from {}",
            cfg.rules.rules.len(),
            cfg.filter_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let today = OffsetDateTime::now_utc().date();
    let mut problems = 0;
    match &cfg.agreements.partnering {
        Some(p) if p.validity.covers(today) => ok(
            "partnering agreement",
            format!("{} valid until {}", p.reference, p.validity.until),
        ),
        Some(p) => {
            problems += 1;
            println!(
                "{} partnering agreement {} is not valid today ({} to {})",
                style("✗").red(),
                p.reference,
                p.validity.from,
                p.validity.until
            );
        }
        None => {
            problems += 1;
            println!(
                "{} no partnering agreement: every operation will be blocked",
                style("✗").red()
            );
        }
    }
    for s in cfg.agreements.sharing.values() {
        let state = if s.validity.covers(today) {
            style("valid").green()
        } else {
            problems += 1;
            style("NOT VALID TODAY").red()
        };
        println!(
            "  sharing {} with {}: {state} {} to {}; operations: {}; attributes: {}",
            s.reference,
            s.ods_code,
            s.validity.from,
            s.validity.until,
            s.operations
                .iter()
                .map(|o| o.name())
                .collect::<Vec<_>>()
                .join(", "),
            s.attributes
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if let Source::Ldap(l) = &cfg.source {
        let info = l
            .probe()
            .await
            .context("cannot connect and bind to the source")?;
        ok(
            "source",
            format!(
                "{} — bound as {} over {}; server: {}; paged results: {}; in-chain matching: {}",
                l.url,
                l.bind_dn,
                info.tls,
                info.vendor.as_deref().unwrap_or("unknown"),
                if info.paged_results { "yes" } else { "NO" },
                if info.in_chain { "yes" } else { "no" }
            ),
        );
        if !info.paged_results {
            problems += 1;
        }
    }
    let collected = pipeline::collect(&cfg, None, true).await?;
    ok(
        "source read",
        format!(
            "{} entries: {} in scope, {} out of scope, {} rejected",
            collected.read,
            collected.persons.len(),
            collected.out_of_scope.len(),
            collected.rejected.len()
        ),
    );
    let mut per_rule: std::collections::BTreeMap<&str, usize> = Default::default();
    for p in collected.persons.values() {
        *per_rule.entry(p.rule.as_str()).or_default() += 1;
    }
    for r in &cfg.rules.rules {
        if let Some(n) = per_rule.get(r.id.as_str()) {
            println!("  rule {}: {n} included", r.id);
        }
    }
    let state = cfg.target.read_state().await?;
    ok(
        "target",
        format!(
            "{} {}: {} organisations, {} accounts",
            cfg.target.kind(),
            cfg.target.location(),
            state.organisations.len(),
            state.accounts.len()
        ),
    );
    for (ods, answer) in &state.refused {
        problems += 1;
        println!(
            "{} the directory refuses {ods}'s accounts although a sharing agreement lists it: {answer}",
            style("✗").red()
        );
    }
    for ods in cfg.agreements.sharing.keys() {
        if !state.organisations.contains_key(ods) {
            problems += 1;
            println!(
                "{} {ods} has a sharing agreement but is not in the directory's organisation registry",
                style("✗").red()
            );
        }
    }
    if problems > 0 {
        println!("{} {problems} problem(s) found", style("✗").red());
        return Ok(1);
    }
    Ok(0)
}

async fn explain(cfg: &Config, who_text: &str, now: OffsetDateTime) -> Result<u8> {
    let who = Who::parse(who_text);
    let run = pipeline::plan(cfg, &cfg.target, now, Some(&who), true).await?;
    let entries = &run.collected.captured;
    let e = match entries.as_slice() {
        [] => bail!(
            "no source entry matches {who_text:?} (searched sAMAccountName, uid, userPrincipalName, DN and objectGUID)"
        ),
        [e] => e,
        many => bail!(
            "{} entries match {who_text:?}; use the DN or objectGUID: {}",
            many.len(),
            many.iter()
                .map(|e| e.dn.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    let b = |s: &str| style(s.to_string()).bold();
    println!("{} {}", b("Source entry"), e.dn);
    match &e.anchor {
        Ok(x) => println!("  anchor (external id): {x}"),
        Err(why) => println!("  anchor: {}", style(why).red()),
    }
    println!("  account enabled: {}", e.enabled);
    for (k, vs) in &e.attrs {
        for v in vs {
            println!("  {k}: {v}");
        }
    }
    println!("\n{}", b("Filter rules, in order (first match decides)"));
    let (decision, traces) = cfg.rules.explain(e, &run.collected.groups);
    for t in &traces {
        let mark = if t.matched {
            style("✓").green()
        } else {
            style("✗").dim()
        };
        println!("  {mark} rule {} ({:?}, {})", t.rule, t.action, t.file);
        if t.conditions.is_empty() {
            println!("      (no conditions: matches everything)");
        }
        for (c, held) in &t.conditions {
            println!(
                "      {} {c}",
                if *held {
                    style("✓").green()
                } else {
                    style("✗").red()
                }
            );
        }
    }
    let rule = match decision {
        Decision::Include(r) => {
            println!("  → included by rule {}", r.id);
            r
        }
        Decision::Exclude(r) => {
            println!("  → excluded by rule {}", r.id);
            return explain_plan(&run.plan, e, who_text);
        }
        Decision::NoMatch => {
            println!("  → excluded: no rule matched (the default is exclude)");
            return explain_plan(&run.plan, e, who_text);
        }
    };
    println!("\n{}", b("Mapping to the NHS Directory model"));
    match rule.ods_code(e) {
        Ok(o) => println!("  ods_code: {o}"),
        Err(why) => println!("  ods_code: {}", style(why).red()),
    }
    let raw = cfg.mapping.raw_values(e, rule);
    match map_entry(e, rule, &cfg.mapping) {
        Ok(p) => {
            for f in crate::model::Field::ALL {
                let src = &cfg.mapping.fields[&f];
                match (raw.get(&f), p.get(f)) {
                    (None, None) => println!("  {f}: (none; source {src} empty)"),
                    (r, v) => println!(
                        "  {f}: {:?} → {:?}{}",
                        r.map(String::as_str).unwrap_or(""),
                        v.unwrap_or(""),
                        if f.is_synchronised() {
                            ""
                        } else {
                            "  (used for eligibility and matching only)"
                        }
                    ),
                }
            }
            println!("  validation: {}", style("passed").green());
        }
        Err(r) => {
            for (f, v) in &raw {
                println!("  {f}: {v:?}");
            }
            println!(
                "  validation: {} {:?}: {}",
                style("rejected").red(),
                r.reason,
                r.detail
            );
        }
    }
    explain_plan(&run.plan, e, who_text)
}

fn explain_plan(plan: &crate::plan::Plan, e: &crate::source::SourceEntry, who: &str) -> Result<u8> {
    println!("\n{}", style("Gate and plan").bold());
    let Ok(x) = &e.anchor else {
        println!("  no anchor, so no operation can be planned");
        return Ok(0);
    };
    let mut found = false;
    for p in plan.operations.iter().filter(|p| p.op.external_id() == x) {
        found = true;
        println!(
            "  planned operation:\n{}",
            indent(&serde_json::to_string_pretty(p)?)
        );
    }
    for bl in plan.blocked.iter().filter(|b| &b.external_id == x) {
        found = true;
        println!(
            "  {} {} ({}): {}",
            style("blocked").yellow(),
            bl.kind,
            serde_json::to_value(bl.reason)?
                .as_str()
                .unwrap_or_default(),
            bl.detail
        );
    }
    for r in plan
        .rejected
        .iter()
        .filter(|r| r.external_id.as_ref() == Some(x))
    {
        found = true;
        println!("  {} {:?}: {}", style("rejected").red(), r.reason, r.detail);
    }
    if !found {
        println!(
            "  no operation for {who}: the directory already matches (or there is nothing to do)"
        );
    }
    Ok(0)
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
