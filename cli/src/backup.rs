//! `seglog checkpoint SRC DEST`: a consistent copy of a closed log (`Log::checkpoint`).

use std::path::PathBuf;

use clap::Args;

use crate::Exit;
use crate::inspect::{open_existing, with_spinner};

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// The log directory to copy (not open in another process: a running program takes
    /// checkpoints of its own log with `Log::checkpoint`).
    src: PathBuf,
    /// Where the copy goes: a new directory, or an empty one. Sealed segments are hard-linked
    /// when it is on the same file system, copied otherwise.
    dest: PathBuf,
}

pub fn checkpoint(args: &CheckpointArgs) -> Result<(), Exit> {
    let log = open_existing(&args.src, true)?;
    let message = format!(
        "checkpointing {} to {}",
        args.src.display(),
        args.dest.display()
    );
    with_spinner(message, || log.checkpoint(&args.dest))?;
    let keys = log.len();
    log.close()?;
    println!(
        "{}: checkpoint of {} keys written to {}",
        args.src.display(),
        keys,
        args.dest.display()
    );
    Ok(())
}
