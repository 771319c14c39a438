//! `seglog`: benchmark, inspect, verify, back up, export and import seglog logs, ship them to
//! object storage and restore them from it.
//!
//! Every failure is one line on stderr (`seglog: …`) and a non-zero exit, by the table in
//! [`EXIT_CODES`]: 1 when damage was found (a corrupt record, for `verify`, `dump` or a strict
//! open), 2 for bad usage (clap's own, or bad import input) and for a log that cannot be opened
//! (missing, foreign or locked directory) or another error. A panic, which would be a bug, is
//! also reported in one line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod backup;
mod base64;
mod bench;
mod inspect;
mod ship;
mod transfer;
mod verify;

/// What `--help` says about exit codes.
const EXIT_CODES: &str = "Exit codes:\n  \
    0  success: nothing wrong found\n  \
    1  damage found: a corrupt record (verify, dump --json, or any command whose strict open \
       refused the log), or a damaged object in object storage (ship, restore)\n  \
    2  usage error, bad import input, a bad URL, the log cannot be opened (missing, not a log, \
       locked) or written, or the object store failed or holds no log there (ship, restore)";

/// seglog: a lock-free segmented mmap append log.
#[derive(Debug, Parser)]
#[command(name = "seglog", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the seed's five concurrent scenarios on seglog and on the seed design, side by side.
    Bench(bench::BenchArgs),
    /// Open a log and print its counts (segments, keys, bytes, index, what recovery found).
    Stats(inspect::StatsArgs),
    /// Check every record of a log against its checksum, without changing anything.
    Verify(verify::VerifyArgs),
    /// Print a log's records in log order, or one key's current value.
    Dump(inspect::DumpArgs),
    /// Relocate the live records of mostly-dead segments and delete those segments.
    Compact(inspect::CompactArgs),
    /// Write a consistent copy of a log to a new directory (hard links where possible).
    Checkpoint(backup::CheckpointArgs),
    /// Print every live key and value as JSON lines, in log order.
    Export(transfer::ExportArgs),
    /// Put the keys and values of `seglog export` JSON lines into a log (created if needed).
    Import(transfer::ImportArgs),
    /// Copy a closed log to object storage (s3://BUCKET/PREFIX or file:///PATH); --follow keeps
    /// copying what changes.
    Ship(ship::ShipArgs),
    /// Rebuild a log directory from what `seglog ship` (or seglog_ship::Shipper) put at a URL.
    Restore(ship::RestoreArgs),
}

/// A command's failure: one line for stderr, exit code 2 (usage, cannot open, other errors).
#[derive(Debug)]
pub struct Failure(pub String);

/// How a command that did not succeed ends.
#[derive(Debug)]
pub enum Exit {
    /// Exit code 2: see [`Failure`].
    Failed(Failure),
    /// Exit code 1: damage found (the line says where).
    Damaged(String),
}

impl From<Failure> for Exit {
    fn from(failure: Failure) -> Self {
        Exit::Failed(failure)
    }
}

impl<E: std::fmt::Display> From<E> for Exit {
    fn from(error: E) -> Self {
        Exit::Failed(Failure(error.to_string()))
    }
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(error.to_string())
    }
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "seglog: internal error (a bug; please report it): {}{at}",
            message.replace('\n', " ")
        );
    }));
    let cli = Cli::parse();
    let result: Result<(), Exit> = match cli.command {
        Command::Bench(args) => bench::run(&args).map_err(Exit::from),
        Command::Stats(args) => inspect::stats(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Dump(args) => inspect::dump(&args),
        Command::Compact(args) => inspect::compact(&args),
        Command::Checkpoint(args) => backup::checkpoint(&args),
        Command::Export(args) => transfer::export(&args),
        Command::Import(args) => transfer::import(&args),
        Command::Ship(args) => ship::ship(&args),
        Command::Restore(args) => ship::restore(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit::Failed(Failure(message))) => {
            eprintln!("seglog: {}", message.replace('\n', " "));
            ExitCode::from(2)
        }
        Err(Exit::Damaged(message)) => {
            eprintln!("seglog: {}", message.replace('\n', " "));
            ExitCode::from(1)
        }
    }
}
