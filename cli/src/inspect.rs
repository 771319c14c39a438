//! `seglog stats`, `seglog dump`, `seglog compact`: commands that open a log.
//!
//! Opening a log recovers it, as any open does: unpublished holes left by a crash are sealed and
//! a torn tail is zeroed, and the background thread may write hint files for sealed segments.
//! These commands open with `Options::strict(true)`, so a log with a corrupt record is refused
//! untouched (run `seglog verify DIR` to list every damaged record), and with automatic
//! compaction off, so only `compact` rewrites anything. A directory that does not
//! exist, holds no segment files, or is open in another process is refused before anything is
//! created in it.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use seglog::{Log, Options, RecordKind, RecordRef};
use seglog_format::{LogFile, SEGMENT_SUFFIX, split_position};
use serde::Serialize;

use crate::{Exit, Failure};

/// Segment files (`LogFile::Segment`) in `dir`, sorted by id; an error for a missing
/// directory, a file, or a directory with none.
pub(crate) fn segment_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Failure> {
    let shown = dir.display();
    let metadata = std::fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Failure(format!("{shown}: no such directory")),
        _ => Failure(format!("{shown}: {e}")),
    })?;
    if !metadata.is_dir() {
        return Err(Failure(format!(
            "{shown} is a file, not a seglog directory"
        )));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Failure(format!("{shown}: {e}")))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Failure(format!("{shown}: {e}")))?;
        if let Some(LogFile::Segment(id)) = LogFile::parse_os(&entry.file_name()) {
            segments.push((id, entry.path()));
        }
    }
    if segments.is_empty() {
        return Err(Failure(format!(
            "{shown} is not a seglog directory: it holds no segment files (*{SEGMENT_SUFFIX})"
        )));
    }
    segments.sort();
    Ok(segments)
}

/// A spinner on stderr (hidden when stderr is not a terminal) while `f` runs.
pub(crate) fn with_spinner<R>(message: String, f: impl FnOnce() -> R) -> R {
    let spinner = indicatif::ProgressBar::new_spinner().with_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    let result = f();
    spinner.finish_and_clear();
    result
}

/// Opens an existing log strictly, without automatic compaction, and read-only unless `write`
/// (a command that only looks changes no byte, name or timestamp in the directory:
/// `Options::read_only`), with a spinner while recovery runs.
pub(crate) fn open_existing(dir: &Path, write: bool) -> Result<Log, Exit> {
    let segments = segment_files(dir)?;
    let message = format!(
        "opening {} ({} segment{})",
        dir.display(),
        segments.len(),
        if segments.len() == 1 { "" } else { "s" }
    );
    let options = Options::default()
        .strict(true)
        .auto_compact(false)
        .read_only(!write);
    with_spinner(message, || Log::open_with(dir, options)).map_err(|e| match e {
        seglog::Error::Corrupt { .. } => Exit::Damaged(format!(
            "{e} (the log was not changed; `seglog verify {}` lists every damaged record)",
            dir.display()
        )),
        other => Exit::Failed(Failure(other.to_string())),
    })
}

/// Writes to stdout; a closed pipe (`seglog dump | head`) ends the command quietly.
pub(crate) fn output(result: io::Result<()>) -> Result<(), Exit> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Exit::Failed(Failure(format!("writing output: {e}")))),
    }
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct StatsReport {
    dir: PathBuf,
    segments: u64,
    segment_bytes: u64,
    keys: u64,
    bytes: u64,
    live_bytes: u64,
    dead_bytes: u64,
    live_ratio: f64,
    index_bytes: u64,
    index_capacity: u64,
    index_resizes: u64,
    recovered_records: u64,
    holes: u64,
    bytes_truncated: u64,
    hinted_segments: u64,
    removed_partial_segments: Vec<PathBuf>,
    foreign_files: Vec<PathBuf>,
}

pub fn stats(args: &StatsArgs) -> Result<(), Exit> {
    let log = open_existing(&args.dir, false)?;
    let stats = log.stats();
    let seglog::RecoveryReport {
        records,
        holes,
        bytes_truncated,
        hinted_segments,
        removed_partial_segments,
        foreign_files,
        ..
    } = log.recovery_report().clone();
    let report = StatsReport {
        dir: args.dir.clone(),
        segments: stats.segments,
        segment_bytes: stats.segment_bytes,
        keys: stats.keys,
        bytes: stats.bytes,
        live_bytes: stats.live_bytes,
        dead_bytes: stats.dead_bytes,
        live_ratio: stats.live_ratio,
        index_bytes: stats.index_bytes,
        index_capacity: stats.index_capacity,
        index_resizes: stats.index_resizes,
        recovered_records: records,
        holes,
        bytes_truncated,
        hinted_segments,
        removed_partial_segments,
        foreign_files,
    };
    drop(log);
    let mut out = io::stdout().lock();
    if args.json {
        let json = serde_json::to_string_pretty(&report)?;
        return output(writeln!(out, "{json}"));
    }
    let r = &report;
    let text = format!(
        "directory        {}\n\
         segments         {} × {}\n\
         keys             {}\n\
         log bytes        {} ({} live, {} dead; live ratio {:.3})\n\
         index            {} in {} slots ({} resizes since open)\n\
         recovery         {} records scanned, {} sealed segments read from hint files, \
         {} holes sealed, {} torn bytes zeroed\n",
        r.dir.display(),
        r.segments,
        bytes(r.segment_bytes),
        r.keys,
        bytes(r.bytes),
        bytes(r.live_bytes),
        bytes(r.dead_bytes),
        r.live_ratio,
        bytes(r.index_bytes),
        r.index_capacity,
        r.index_resizes,
        r.recovered_records,
        hinted_segments,
        r.holes,
        r.bytes_truncated,
    );
    output(out.write_all(text.as_bytes()))?;
    for path in &r.removed_partial_segments {
        output(writeln!(
            out,
            "removed          {} (a segment never completely created)",
            path.display()
        ))?;
    }
    for path in &r.foreign_files {
        output(writeln!(
            out,
            "not part of log  {} (left untouched)",
            path.display()
        ))?;
    }
    Ok(())
}

/// `1.5 MiB`-style sizes.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print only this key's current value (the key as text).
    #[arg(long, conflicts_with = "key_hex")]
    key: Option<String>,
    /// Print only this key's current value (the key as hex bytes).
    #[arg(long)]
    key_hex: Option<String>,
    /// Show keys and values as hex, even when they are printable text.
    #[arg(long)]
    hex: bool,
    /// Show whole values (by default values are cut after 64 bytes).
    #[arg(long)]
    full: bool,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// One JSON object a line: {"segment", "offset", "kind", "version", "key" or "key_b64",
    /// and for puts "value" or "value_b64"}, whole keys and values (text when valid UTF-8,
    /// base64 otherwise, as `seglog export` writes them).
    #[arg(long)]
    json: bool,
}

/// Text if the bytes are printable UTF-8 (escaped, quoted), hex otherwise or when asked.
fn show(bytes: &[u8], hex: bool, limit: Option<usize>) -> String {
    let cut = limit.map_or(bytes.len(), |l| l.min(bytes.len()));
    let rest = bytes.len() - cut;
    let shown = &bytes[..cut];
    let text = (!hex)
        .then(|| std::str::from_utf8(shown).ok())
        .flatten()
        .filter(|s| s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
    let body = match text {
        Some(s) => format!("\"{}\"", s.escape_debug()),
        None => {
            let mut h = String::with_capacity(shown.len() * 2 + 2);
            h.push_str("0x");
            for b in shown {
                h.push_str(&format!("{b:02x}"));
            }
            h
        }
    };
    if rest > 0 {
        format!("{body}… ({rest} more bytes)")
    } else {
        body
    }
}

fn parse_hex(hex: &str) -> Result<Vec<u8>, Failure> {
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    if !hex.len().is_multiple_of(2) {
        return Err(Failure(format!(
            "--key-hex {hex}: odd number of hex digits"
        )));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .map_err(|_| Failure(format!("--key-hex {hex}: not hex")))
        })
        .collect()
}

/// The name `dump` gives a record's kind.
pub(crate) fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Put => "put",
        RecordKind::Tombstone => "tombstone",
        RecordKind::Padding => "padding",
        RecordKind::Aborted => "aborted",
        // Scans read a batch's members as puts and tombstones and skip its header.
        RecordKind::Batch => "batch",
        RecordKind::BatchPut => "batch put",
        RecordKind::BatchTombstone => "batch tombstone",
    }
}

fn describe(record: &RecordRef<'_>, segment_bytes: u64, hex: bool, limit: Option<usize>) -> String {
    let (segment, offset) = split_position(record.position, segment_bytes);
    let kind = kind_name(record.kind);
    let mut line = format!(
        "{}+{offset:<10} {kind:<9} v{:<14} key={}",
        LogFile::Segment(segment),
        record.version,
        show(record.key, hex, None)
    );
    if record.kind == RecordKind::Put {
        line.push_str(&format!(
            " value[{}]={}",
            record.value.len(),
            show(record.value, hex, limit)
        ));
    }
    line
}

pub fn dump(args: &DumpArgs) -> Result<(), Exit> {
    let log = open_existing(&args.dir, false)?;
    let limit = (!args.full).then_some(64);
    let segment_bytes = log.append_log().segment_bytes();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let line = |record: &RecordRef<'_>| {
        if args.json {
            crate::transfer::record_json(record, segment_bytes).to_string()
        } else {
            describe(record, segment_bytes, args.hex, limit)
        }
    };
    let key = match (&args.key, &args.key_hex) {
        (Some(k), _) => Some(k.as_bytes().to_vec()),
        (None, Some(h)) => Some(parse_hex(h)?),
        (None, None) => None,
    };
    if let Some(key) = key {
        let pinned = log.pin();
        let Some(record) = pinned.get_record(&key) else {
            return Err(Exit::Failed(Failure(format!(
                "key {} has no value in {}",
                show(&key, args.hex, None),
                args.dir.display()
            ))));
        };
        output(writeln!(out, "{}", line(&record)))?;
        return output(out.flush());
    }
    let pinned = log.pin();
    let mut scan = log.append_log().scan(pinned.guard());
    for (printed, record) in scan.by_ref().enumerate() {
        if args.limit.is_some_and(|l| printed as u64 >= l) {
            break;
        }
        output(writeln!(out, "{}", line(&record)))?;
    }
    output(out.flush())?;
    if let Some(error) = scan.error() {
        return Err(Exit::Damaged(format!("scan stopped: {error}")));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The log directory.
    dir: PathBuf,
}

pub fn compact(args: &CompactArgs) -> Result<(), Exit> {
    let log = open_existing(&args.dir, true)?;
    let before = log.stats();
    let retired = with_spinner(format!("compacting {}", args.dir.display()), || {
        log.compact()
    })?;
    let after = log.stats();
    // Closing the log deletes the files of retired segments no reader can reach any more.
    drop(log);
    let mut out = io::stdout().lock();
    output(writeln!(
        out,
        "{}: retired {retired} segment{} ({} relocated in {} records); segments {} -> {}, \
         log bytes {} -> {} (live ratio {:.3} -> {:.3})",
        args.dir.display(),
        if retired == 1 { "" } else { "s" },
        bytes(after.compaction.bytes_relocated - before.compaction.bytes_relocated),
        after.compaction.records_relocated - before.compaction.records_relocated,
        before.segments,
        after.segments,
        bytes(before.bytes),
        bytes(after.bytes),
        before.live_ratio,
        after.live_ratio,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_text_and_hex() {
        assert_eq!(show(b"abc", false, None), "\"abc\"");
        assert_eq!(show(b"abc", true, None), "0x616263");
        assert_eq!(show(&[0, 1], false, None), "0x0001");
        assert_eq!(show(b"abcdef", false, Some(2)), "\"ab\"… (4 more bytes)");
    }

    #[test]
    fn segment_files_lists_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            LogFile::Segment(42).name(),
            LogFile::Segment(7).name(),
            LogFile::Hint(42).name(),
            LogFile::FreeSegment(3).name(),
            LogFile::Lock.name(),
            // Not segments: uppercase, too short.
            "000000000000002A.seg".into(),
            "2a.seg".into(),
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let found: Vec<u64> = segment_files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(found, [7, 42]);
    }

    #[test]
    fn records_are_described_by_segment_file_and_offset() {
        let record = RecordRef {
            position: (42 << 16) | 64,
            kind: RecordKind::Tombstone,
            version: 7,
            key: b"k",
            value: &[],
            record_bytes: 48,
        };
        assert_eq!(
            describe(&record, 1 << 16, false, None),
            "000000000000002a.seg+64         tombstone v7              key=\"k\""
        );
    }

    #[test]
    fn hex_keys() {
        assert_eq!(parse_hex("0x6b01").unwrap(), vec![0x6b, 0x01]);
        assert!(parse_hex("abc").is_err());
    }
}
