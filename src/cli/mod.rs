//! Command line: parses arguments, calls the engine ([`crate::engine`]) and renders its
//! reports ([`render`]), nothing more. Exit codes: `plan` 0 no changes, 2 changes
//! present, 1 error; `apply`/`sync` 0 all applied, 1 otherwise (also when stopped by
//! SIGINT/SIGTERM, which lets in-flight operations finish and records the run as
//! interrupted).

mod logging;
mod progress;
mod render;

use crate::config::Config;
use crate::engine::{self, apply::ApplyRequest};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use console::style;
use nhs_model::escape::Escaped;
use progress::Bars;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

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
        /// Decide as of this time (RFC 3339) instead of now. A plan made with `plan --now`
        /// needs the same --now here: apply plans again and refuses the saved plan if the
        /// decisions differ (agreement windows, restore windows and leaver ages depend on
        /// the time).
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
    /// Plan and apply in one step (for scripts).
    Sync {
        /// Also apply the removals the mass-change guard held, for this plan only.
        #[arg(long, value_name = "PLAN_FINGERPRINT")]
        approve_removals: Option<String>,
        /// Decide as of this time (RFC 3339) instead of now.
        #[arg(long, value_parser = parse_time)]
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
    /// The hash-chained audit trail of every operation sent and its outcome.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Objects held back after repeated failures.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Validate configuration, filters and agreements; connect to the source and report.
    Check,
    /// Run continuously: a full cycle, then delta cycles on the `[daemon]` schedule, a
    /// full reconcile at least every `full_every_hours`. SIGTERM/SIGINT stop it (exit 0);
    /// SIGHUP reloads the configuration.
    Run {
        /// Run one cycle and exit with `apply`'s codes (0: all applied; 1: otherwise).
        #[arg(long)]
        once: bool,
        /// Plan every cycle and write nothing (also `[daemon] standby = true`).
        #[arg(long)]
        standby: bool,
    },
    /// Continuous mode's state: last cycles, the watermark and its DC, held removals.
    Status {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Approve the removals the mass-change guard is holding in continuous mode, named
    /// by the digest `tansync status` shows; void if the held set changes.
    ApproveRemovals { digest: String },
    /// The NHSmail Portal bridge (`[target] kind = "portal_report"`): feed back a
    /// results file, see the batches and the worklist, release an unsettled row.
    Portal {
        #[command(subcommand)]
        command: PortalCommand,
    },
    /// Explain the decision for one person: by sAMAccountName/uid, DN or objectGUID.
    Explain {
        who: String,
        #[arg(long, value_parser = parse_time)]
        now: Option<OffsetDateTime>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the chain: every record's hash and sequence, and each run's recorded head.
    /// Exit 0: intact; 1: the first bad record is named (edited, removed, reordered,
    /// or a tail cut off after a run recorded its head).
    Verify {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Print every record as a JSON line (with its hash and the previous hash), oldest
    /// first, for an information-governance review.
    Export,
}

#[derive(Subcommand, Debug)]
pub enum PortalCommand {
    /// Settle a batch from the results file the Portal returned (the uploaded file with
    /// a result column added). Failed rows are exported again by the next apply; rows
    /// that succeeded are confirmed by the next Mailbox Report.
    Results {
        file: PathBuf,
        /// The batch it returns, when several batches hold exactly its rows.
        #[arg(long)]
        batch: Option<i64>,
    },
    /// Batches (in flight, settled), rows awaiting evidence or unsettled, and the open
    /// worklist.
    Status {
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// After checking in the Portal that these people have NO mailbox although the
    /// journal says they may (rows reported, unsettled, confirmed or differs), let the
    /// next apply create them again.
    Release {
        #[arg(value_name = "LOCAL_ID", required = true)]
        local_ids: Vec<String>,
    },
    /// The batch in flight was not uploaded and never will be (a lost file, a wrong
    /// template): settle it as not applied, so the next apply exports afresh.
    Discard { batch: i64 },
}

#[derive(Subcommand, Debug)]
pub enum QuarantineCommand {
    /// Let the next apply try this object again.
    Clear { external_id: String },
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    crate::timefmt::parse_rfc3339(s)
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the configuration is validated, so that its errors are logged as it says.
    // Continuous mode says what each cycle did.
    let default_log = if matches!(cli.command, Command::Run { .. }) {
        logging::DAEMON_FILTER
    } else {
        logging::DEFAULT_FILTER
    };
    logging::init(crate::config::LogSettings::peek(&cli.config), default_log);
    if let Some(keytab) = crate::config::peek_keytab(&cli.config) {
        // SAFETY: the runtime, the first thread besides this one, starts below; nothing
        // before this line starts a thread. A keytab change therefore needs a restart
        // (the daemon's reload keeps the old configuration when it sees one).
        unsafe { crate::config::use_keytab_for_process(&keytab) };
    }
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
    let shutdown = CancellationToken::new();
    rt.spawn(on_signal(shutdown.clone()));
    match rt.block_on(run(cli, &shutdown)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Error chains quote DNs, values and the directory's answers: escaped whole.
            eprintln!(
                "{} {}",
                style("error:").red().bold(),
                Escaped(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}

/// SIGINT or SIGTERM: cancel the one shutdown token every stage listens to.
async fn on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for SIGINT/SIGTERM; a signal will stop tansync at once");
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("tansync: stopping: nothing new is sent; finishing the requests in flight");
    shutdown.cancel();
}

fn load(path: &Path) -> Result<Config> {
    Config::load(path).with_context(|| format!("configuration {} is not valid", path.display()))
}

async fn run(cli: Cli, shutdown: &CancellationToken) -> Result<u8> {
    let bars = Bars::new();
    match cli.command {
        Command::Plan { format, out, now } => {
            let cfg = load(&cli.config)?;
            let now = now.unwrap_or_else(OffsetDateTime::now_utc);
            let run = engine::plan::plan(&cfg, now, &bars, shutdown).await?;
            // Only the plan and the names it shows are needed from here: free the source
            // and target state first.
            let people = match format {
                Format::Human => run.people(),
                Format::Json => Default::default(),
            };
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
                    stdout.write_all(crate::plan::render::human(&plan, &people).as_bytes())?;
                }
            }
            Ok(if plan.has_changes() { 2 } else { 0 })
        }
        Command::Check => {
            let cfg = load(&cli.config)?;
            let today = OffsetDateTime::now_utc().date();
            let report = engine::check::check(&cfg, today, &bars, shutdown).await?;
            render::check(&report, &mut std::io::stdout().lock())
        }
        Command::Apply {
            plan,
            approve_removals,
            now,
        } => {
            let cfg = load(&cli.config)?;
            let req = ApplyRequest {
                plan_file: plan.as_deref(),
                approve_removals: approve_removals.as_deref(),
                now: now.unwrap_or_else(OffsetDateTime::now_utc),
            };
            if let Some((portal, target)) = engine::portal::configured(&cfg) {
                let r = engine::portal::apply(&cfg, portal, target, req, &bars, shutdown).await?;
                return render::portal::apply(&r, &mut std::io::stdout().lock());
            }
            let report = engine::apply::apply(&cfg, req, &bars, shutdown).await?;
            render::apply(
                &report,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::Sync {
            approve_removals,
            now,
        } => {
            let cfg = load(&cli.config)?;
            let req = ApplyRequest {
                plan_file: None,
                approve_removals: approve_removals.as_deref(),
                now: now.unwrap_or_else(OffsetDateTime::now_utc),
            };
            if let Some((portal, target)) = engine::portal::configured(&cfg) {
                let r = engine::portal::apply(&cfg, portal, target, req, &bars, shutdown).await?;
                return render::portal::apply(&r, &mut std::io::stdout().lock());
            }
            let report = engine::apply::apply(&cfg, req, &bars, shutdown).await?;
            render::apply(
                &report,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::History { run, limit, format } => {
            let cfg = load(&cli.config)?;
            let json = matches!(format, Format::Json);
            match run {
                None => render::runs(
                    &engine::history::runs(&cfg, limit)?,
                    json,
                    &mut std::io::stdout().lock(),
                ),
                Some(id) => render::journal(
                    id,
                    &engine::history::journal(&cfg, id)?,
                    json,
                    &mut std::io::stdout().lock(),
                ),
            }
        }
        Command::Audit {
            command: AuditCommand::Verify { format },
        } => {
            let cfg = load(&cli.config)?;
            render::audit_verify(
                &engine::audit::verify(&cfg)?,
                matches!(format, Format::Json),
                &mut std::io::stdout().lock(),
            )
        }
        Command::Audit {
            command: AuditCommand::Export,
        } => {
            use std::io::Write;
            let cfg = load(&cli.config)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            engine::audit::export(&cfg, |r| -> Result<()> {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
                Ok(())
            })?;
            out.flush()?;
            Ok(0)
        }
        Command::Quarantine {
            command: QuarantineCommand::Clear { external_id },
        } => {
            let cfg = load(&cli.config)?;
            let shown = Escaped(&external_id);
            if engine::history::clear_quarantine(&cfg, &external_id)? {
                println!("{shown}: cleared; the next apply will try it again");
                Ok(0)
            } else {
                println!("{shown}: not quarantined");
                Ok(1)
            }
        }
        Command::Run { once, standby } => {
            let cfg = load(&cli.config)?;
            let observer = std::sync::Arc::new(crate::daemon::observe::Observer::default());
            let opts = crate::daemon::RunOptions { once, standby };
            Ok(crate::daemon::run(&cli.config, cfg, opts, &observer, shutdown).await?)
        }
        Command::Status { format } => {
            let cfg = load(&cli.config)?;
            let st = crate::daemon::status::status(&cfg, 10)?;
            render::status(
                &st,
                matches!(format, Format::Json),
                &mut std::io::stdout().lock(),
            )
        }
        Command::ApproveRemovals { digest } => {
            let cfg = load(&cli.config)?;
            match crate::daemon::status::approve_removals(&cfg, &digest)? {
                Ok(h) => {
                    println!(
                        "approved {} held removal(s) ({}); the next cycle applies them if the held set is unchanged",
                        h.count, h.digest
                    );
                    Ok(0)
                }
                Err(why) => {
                    eprintln!("{} {}", style("error:").red().bold(), Escaped(&why));
                    Ok(1)
                }
            }
        }
        Command::Portal { command } => {
            let cfg = load(&cli.config)?;
            let Some((portal, _)) = engine::portal::configured(&cfg) else {
                anyhow::bail!(
                    "{}: `tansync portal` needs [target] kind = \"portal_report\"",
                    cli.config.display()
                );
            };
            let mut out = std::io::stdout().lock();
            match command {
                PortalCommand::Results { file, batch } => {
                    match engine::portal::results(&cfg, portal, &file, batch)? {
                        engine::portal::ResultsOutcome::Settled(r) => {
                            render::portal::results(&r, &mut out)
                        }
                        engine::portal::ResultsOutcome::Queued(q) => {
                            render::portal::queued(&q, &mut out)
                        }
                    }
                }
                PortalCommand::Status { format } => {
                    let st = engine::portal::status(&cfg)?;
                    render::portal::status(&st, matches!(format, Format::Json), &mut out)
                }
                PortalCommand::Release { local_ids } => {
                    let rows = engine::portal::release(&cfg, &local_ids)?;
                    render::portal::released(&rows, "the next apply may create it again", &mut out)
                }
                PortalCommand::Discard { batch } => {
                    let rows = engine::portal::discard(&cfg, batch)?;
                    render::portal::released(
                        &rows,
                        "not applied: the next apply exports it afresh",
                        &mut out,
                    )
                }
            }
        }
        Command::Explain { who, now } => {
            let cfg = load(&cli.config)?;
            let now = now.unwrap_or_else(OffsetDateTime::now_utc);
            let x = engine::explain::explain(&cfg, &who, now, &bars, shutdown).await?;
            render::explain(&cfg, &x, &who, &mut std::io::stdout().lock())?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn pages(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// `deploy/man/`, the man pages the Debian package installs (`tansync(1)` and one
    /// per subcommand, `tansync-plan(1)`, …), are the command line's own definition
    /// rendered by clap_mangen: they cannot drift from `--help`.
    /// `TANSYNC_UPDATE_MAN=1 cargo test -p tansync --lib man_pages` writes them again.
    #[test]
    fn man_pages_are_current() {
        let fresh = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), fresh.path()).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/man");
        if std::env::var_os("TANSYNC_UPDATE_MAN").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, page) in pages(fresh.path()) {
                std::fs::write(dir.join(name), page).unwrap();
            }
        }
        let (want, shipped) = (pages(fresh.path()), pages(&dir));
        assert!(want.contains_key("tansync.1") && want.contains_key("tansync-plan.1"));
        assert!(
            shipped == want,
            "{} is out of date (has {:?}, should have {:?}): run TANSYNC_UPDATE_MAN=1 cargo test -p tansync --lib man_pages",
            dir.display(),
            shipped.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
    }
}
