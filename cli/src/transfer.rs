//! `seglog export DIR` and `seglog import DIR`: a log's live keys and values as JSON lines.
//!
//! # The format
//! One JSON object a line, one line a live key:
//!
//! ```text
//! {"key":"user-1","value":"hello"}
//! {"key_b64":"AAEC","value_b64":"//79"}
//! ```
//!
//! A key (or value) that is valid UTF-8 is written as a JSON string under `key` (`value`),
//! anything else as standard padded base64 (RFC 4648) under `key_b64` (`value_b64`); each
//! object has exactly one of each pair. Export writes the keys in **log order** (the order of
//! their current records in the log, oldest first), not key order, so it streams without
//! sorting. Import accepts any order (a key given twice ends with its last value), skips blank
//! lines, and refuses unknown fields.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use clap::Args;
use seglog::{Log, Options, RecordKind, RecordRef};
use seglog_format::split_position;
use serde::Deserialize;

use crate::inspect::{open_existing, output};
use crate::{Exit, Failure, base64};

#[derive(Debug, Args)]
#[command(
    after_help = "Output: one JSON object a line, {\"key\": TEXT, \"value\": TEXT}, with \
                        \"key_b64\" / \"value_b64\" (base64) instead for bytes that are not \
                        UTF-8. Keys come in log order (oldest current record first), not in \
                        key order."
)]
pub struct ExportArgs {
    /// The log directory.
    dir: PathBuf,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Input: the JSON lines `seglog export` writes (one object a line with \
                        \"key\" or \"key_b64\" and \"value\" or \"value_b64\"), in any order. \
                        The log is synced before the command returns."
)]
pub struct ImportArgs {
    /// The log directory (created if it does not exist).
    dir: PathBuf,
    /// Read from this file instead of standard input.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Segment size of a new log, in bytes (a power of two; an existing log keeps its own).
    #[arg(long)]
    segment_bytes: Option<u64>,
}

/// Puts `bytes` under `name` as text if it is UTF-8, else under `name_b64` as base64.
fn put_bytes(object: &mut serde_json::Map<String, serde_json::Value>, name: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object.insert(name.into(), text.into()),
        Err(_) => object.insert(format!("{name}_b64"), base64::encode(bytes).into()),
    };
}

/// A record as `dump --json` prints it: where it is, what it is, its key and value.
pub fn record_json(record: &RecordRef<'_>, segment_bytes: u64) -> serde_json::Value {
    let (segment, offset) = split_position(record.position, segment_bytes);
    let kind = crate::inspect::kind_name(record.kind);
    let mut object = serde_json::Map::new();
    object.insert("segment".into(), segment.into());
    object.insert("offset".into(), offset.into());
    object.insert("kind".into(), kind.into());
    object.insert("version".into(), record.version.into());
    put_bytes(&mut object, "key", record.key);
    if record.kind == RecordKind::Put {
        put_bytes(&mut object, "value", record.value);
    }
    object.into()
}

pub fn export(args: &ExportArgs) -> Result<(), Exit> {
    let log = open_existing(&args.dir, false)?;
    let pinned = log.pin();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut scan = log.append_log().scan(pinned.guard());
    for record in scan.by_ref() {
        // A key's current record only (a relocated record's original and copy share a
        // version; the index points at one of them).
        let current = record.kind == RecordKind::Put
            && pinned
                .get_record(record.key)
                .is_some_and(|current| current.position == record.position);
        if !current {
            continue;
        }
        let mut object = serde_json::Map::new();
        put_bytes(&mut object, "key", record.key);
        put_bytes(&mut object, "value", record.value);
        output(writeln!(out, "{}", serde_json::Value::from(object)))?;
    }
    output(out.flush())?;
    if let Some(error) = scan.error() {
        return Err(Exit::Damaged(format!("export stopped: {error}")));
    }
    Ok(())
}

/// One line of import input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: Option<String>,
    key_b64: Option<String>,
    value: Option<String>,
    value_b64: Option<String>,
}

/// The bytes of a text-or-base64 pair, exactly one of which must be given.
fn field(
    line: usize,
    name: &str,
    text: Option<String>,
    b64: Option<String>,
) -> Result<Vec<u8>, Failure> {
    match (text, b64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(b64)) => base64::decode(&b64).ok_or_else(|| {
            Failure(format!(
                "input line {line}: \"{name}_b64\" is not padded base64"
            ))
        }),
        (Some(_), Some(_)) => Err(Failure(format!(
            "input line {line}: both \"{name}\" and \"{name}_b64\"; give one"
        ))),
        (None, None) => Err(Failure(format!(
            "input line {line}: no \"{name}\" or \"{name}_b64\""
        ))),
    }
}

/// Puts read before each write, so a parse error stops the import before a partial batch.
const BATCH_LINES: usize = 10_000;

pub fn import(args: &ImportArgs) -> Result<(), Exit> {
    let (input, total): (Box<dyn Read>, Option<u64>) = match &args.input {
        Some(path) => {
            let file = File::open(path).map_err(|e| Failure(format!("{}: {e}", path.display())))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(file), len)
        }
        None => (Box::new(io::stdin().lock()), None),
    };
    let mut options = Options::default();
    if let Some(bytes) = args.segment_bytes {
        options = options.segment_bytes(bytes);
    }
    let log = Log::open_with(&args.dir, options)?;
    // Drawn on stderr only when it is a terminal (indicatif hides it otherwise).
    let progress = match total {
        Some(bytes) => indicatif::ProgressBar::new(bytes).with_style(
            indicatif::ProgressStyle::with_template(
                "importing [{bar:30}] {binary_bytes}/{binary_total_bytes} {msg} {elapsed}",
            )
            .expect("a valid progress template")
            .progress_chars("=> "),
        ),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let mut reader = BufReader::new(input);
    let (mut line_number, mut imported) = (0usize, 0u64);
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(BATCH_LINES);
    let mut text = String::new();
    loop {
        text.clear();
        let read = reader
            .read_line(&mut text)
            .map_err(|e| Failure(format!("reading input line {}: {e}", line_number + 1)))?;
        if read > 0 {
            line_number += 1;
            progress.inc(read as u64);
            if !text.trim().is_empty() {
                let line: Line = serde_json::from_str(&text)
                    .map_err(|e| Failure(format!("input line {line_number}: {e}")))?;
                let key = field(line_number, "key", line.key, line.key_b64)?;
                let value = field(line_number, "value", line.value, line.value_b64)?;
                batch.push((key, value));
            }
        }
        if batch.len() >= BATCH_LINES || (read == 0 && !batch.is_empty()) {
            for (key, value) in batch.drain(..) {
                log.put(&key, &value)?;
                imported += 1;
            }
            progress.set_message(format!("{imported} keys"));
        }
        if read == 0 {
            break;
        }
    }
    progress.finish_and_clear();
    log.close()?;
    println!("{}: imported {imported} keys", args.dir.display());
    Ok(())
}
