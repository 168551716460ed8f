//! The `nhs-directory` binary: `nhs-directory serve --directory-config FILE` runs the
//! reference NHS Directory until SIGINT/SIGTERM (see [`nhs_directory::serve`]);
//! `nhs-directory export --directory-config FILE` prints the state of its database as a
//! target snapshot (see [`nhs_directory::seed`]).
//!
//! As the NHSmail Portal's twin (see [`nhs_directory::portal`]):
//! `nhs-directory report --directory-config FILE` prints the Mailbox Report CSV of its
//! database; `nhs-directory sample-template` prints the bulk-upload template's header
//! line; `nhs-directory ingest --directory-config FILE --results OUT BATCH.csv
//! [--stop-after N] [--pause]` processes one bulk-upload CSV (exit 0 with its results
//! in OUT, even when rows failed; 1 for a bad file, configuration or database, nothing
//! processed when the file is at fault; 3 while another upload is processing; 4 after a
//! simulated interruption, `--stop-after N`, with no results). `--pause` prints
//! `upload N processing` on stderr once the upload holds the lock and waits for one line
//! on stdin before the first row.

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "nhs-directory",
    version,
    about = "The reference NHS Directory: a SCIM 2.0 server over SQLite enforcing the NHS Directory rules (for tests, demos and staging)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the directory; prints `listening on URL` on stdout once ready.
    Serve {
        /// The directory's configuration file.
        #[arg(long = "directory-config")]
        directory_config: PathBuf,
    },
    /// Print the directory's state (its database file) as a target snapshot
    /// (tansync.snapshot/v1), the format `seed` and `[target] kind = "snapshot"` read.
    /// Only reads; may run beside `serve`.
    Export {
        /// The directory's configuration file.
        #[arg(long = "directory-config")]
        directory_config: PathBuf,
    },
    /// Print the Mailbox Report CSV of every account in the directory's database (all
    /// organisations), ordered by ODS code then address. Only reads; may run beside
    /// `serve`.
    Report {
        /// The directory's configuration file.
        #[arg(long = "directory-config")]
        directory_config: PathBuf,
    },
    /// Print the bulk-upload template's header line (the Portal's sample file).
    SampleTemplate,
    /// Process one bulk-upload CSV as the Portal does, one upload at a time, and write
    /// the results (the file with a `Result` column) to OUT. Exit 0 with results (even
    /// when rows failed), 1 on a bad file or configuration, 3 while another upload is
    /// processing, 4 after `--stop-after`.
    Ingest {
        /// The directory's configuration file.
        #[arg(long = "directory-config")]
        directory_config: PathBuf,
        /// Where to write the results file.
        #[arg(long = "results", value_name = "OUT")]
        results: PathBuf,
        /// Simulate an interruption: process this many rows, then stop (no results, exit 4).
        #[arg(long = "stop-after", value_name = "N")]
        stop_after: Option<usize>,
        /// Once the upload holds the lock, print `upload N processing` on stderr and wait
        /// for one line on stdin before processing.
        #[arg(long)]
        pause: bool,
        /// The bulk-upload CSV.
        batch: PathBuf,
    },
}

/// `--pause`: say the upload holds the lock, then wait for one line on stdin.
fn pause(id: i64) -> anyhow::Result<()> {
    {
        let mut err = std::io::stderr().lock();
        writeln!(err, "upload {id} processing")?;
        err.flush()?;
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(())
}

fn print(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NHS_DIRECTORY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nhs-directory: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Ingest {
        directory_config,
        results,
        stop_after,
        pause: wait,
        batch,
    } = &cli.command
    {
        let options = nhs_directory::portal::IngestOptions {
            stop_after: *stop_after,
        };
        let mut on_lock = |id: i64| if *wait { pause(id) } else { Ok(()) };
        return match nhs_directory::portal::run_ingest(
            directory_config,
            batch,
            results,
            &options,
            &mut on_lock,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("nhs-directory: error: {e:#}");
                ExitCode::from(e.exit_code())
            }
        };
    }
    let result = match cli.command {
        Command::Serve { directory_config } => rt.block_on(nhs_directory::serve(&directory_config)),
        Command::Export { directory_config } => {
            nhs_directory::seed::export(&directory_config).and_then(|json| print(json.as_bytes()))
        }
        Command::Report { directory_config } => {
            nhs_directory::portal::report(&directory_config).and_then(|csv| print(&csv))
        }
        Command::SampleTemplate => print(nhs_directory::portal::sample_template().as_bytes()),
        // Handled above: its errors have their own exit codes.
        Command::Ingest { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nhs-directory: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
