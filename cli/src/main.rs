//! `seglog`: benchmark, inspect and verify seglog logs.
//!
//! Every failure is one line on stderr (`seglog: …`) and a non-zero exit: 1 for a failed
//! command (missing, foreign, locked or corrupt directory; corruption found by `verify`), 2 for
//! bad usage (clap's own). A panic, which would be a bug, is also reported in one line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod inspect;
mod verify;

/// seglog: a lock-free segmented mmap append log.
#[derive(Debug, Parser)]
#[command(name = "seglog", version, about)]
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
}

/// A command's failure: one line for stderr.
#[derive(Debug)]
pub struct Failure(pub String);

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
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
        Command::Stats(args) => inspect::stats(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Dump(args) => inspect::dump(&args),
        Command::Compact(args) => inspect::compact(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("seglog: {}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
