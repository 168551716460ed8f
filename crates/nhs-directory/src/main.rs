//! The `nhs-directory` binary: `nhs-directory serve --directory-config FILE` runs the
//! reference NHS Directory until SIGINT/SIGTERM (see [`nhs_directory::serve`]);
//! `nhs-directory export --directory-config FILE` prints the state of its database as a
//! target snapshot (see [`nhs_directory::seed`]).

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
    let result = match cli.command {
        Command::Serve { directory_config } => rt.block_on(nhs_directory::serve(&directory_config)),
        Command::Export { directory_config } => nhs_directory::seed::export(&directory_config)
            .and_then(|json| {
                let mut out = std::io::stdout().lock();
                out.write_all(json.as_bytes())?;
                out.flush()?;
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nhs-directory: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
