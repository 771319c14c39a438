//! `seglog`: run, inspect and verify seglog logs.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;

/// seglog: a lock-free segmented mmap append log.
#[derive(Debug, Parser)]
#[command(name = "seglog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the benchmark workloads and print a table.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("seglog: {error}");
            ExitCode::FAILURE
        }
    }
}
