//! The names of the files a log directory holds.
//!
//! ```text
//! <16 lowercase hex digits>.seg          a segment                    LogFile::Segment(id)
//! <16 lowercase hex digits>.hint         a sealed segment's hint      LogFile::Hint(id)
//! <16 lowercase hex digits>.hint.tmp     a hint being written         LogFile::HintTmp(id)
//! LOCK                                   the directory's lock         LogFile::Lock
//! <16 lowercase hex digits>.seg.free     a retired segment, for reuse LogFile::FreeSegment(id)
//! <16 lowercase hex digits>.seg.corrupt  a damaged segment, set aside LogFile::CorruptSegment(id)
//! ```
//!
//! The id is the segment's, zero-padded to exactly 16 digits: segment 42 is
//! `000000000000002a.seg`. Uppercase digits, other lengths, signs and any other name are not
//! log files ([`LogFile::parse`] returns `None`): a log leaves such files alone.

use core::fmt;
use std::ffi::OsStr;
use std::path::Path;

/// Digits of the segment id in a file name.
pub const SEGMENT_ID_DIGITS: usize = 16;
/// Name of the lock file.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Suffix of a segment file.
pub const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of a hint file.
pub const HINT_SUFFIX: &str = ".hint";
/// Suffix of a hint file being written (renamed to [`HINT_SUFFIX`] once complete).
pub const HINT_TMP_SUFFIX: &str = ".hint.tmp";
/// Suffix of a retired segment file kept for reuse.
pub const FREE_SEGMENT_SUFFIX: &str = ".seg.free";
/// Suffix of a segment file set aside because its header is damaged beyond repair.
pub const CORRUPT_SEGMENT_SUFFIX: &str = ".seg.corrupt";

/// A file a log directory can hold, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogFile {
    /// `<id>.seg`: segment `id`.
    Segment(u64),
    /// `<id>.hint`: the hint of sealed segment `id`.
    Hint(u64),
    /// `<id>.hint.tmp`: the hint of segment `id` while it is written; a leftover one is removed
    /// at open.
    HintTmp(u64),
    /// `LOCK`: held (`flock`) by the process that has the log open.
    Lock,
    /// `<id>.seg.free`: the file of retired segment `id`, kept to be reused for a new segment
    /// (the id is the retired one's and means nothing any more); removed at open.
    FreeSegment(u64),
    /// `<id>.seg.corrupt`: segment `id`'s file, set aside by an open because its header was
    /// damaged and could not be rebuilt; left for the operator.
    CorruptSegment(u64),
}

impl LogFile {
    /// The file that `name` names, if it is one a log directory holds. Never panics.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        if name == LOCK_FILE_NAME {
            return Some(Self::Lock);
        }
        // No suffix is a suffix of another, so at most one matches.
        type Kind = fn(u64) -> LogFile;
        let kinds: [(&str, Kind); 5] = [
            (SEGMENT_SUFFIX, Self::Segment),
            (HINT_SUFFIX, Self::Hint),
            (HINT_TMP_SUFFIX, Self::HintTmp),
            (FREE_SEGMENT_SUFFIX, Self::FreeSegment),
            (CORRUPT_SEGMENT_SUFFIX, Self::CorruptSegment),
        ];
        kinds.iter().find_map(|&(suffix, kind)| {
            name.strip_suffix(suffix)
                .and_then(parse_segment_id)
                .map(kind)
        })
    }

    /// [`LogFile::parse`] of a name as the file system gives it; a name that is not UTF-8 is no
    /// log file.
    #[must_use]
    pub fn parse_os(name: &OsStr) -> Option<Self> {
        name.to_str().and_then(Self::parse)
    }

    /// [`LogFile::parse`] of the last component of `path`.
    #[must_use]
    pub fn from_path(path: &Path) -> Option<Self> {
        path.file_name().and_then(Self::parse_os)
    }

    /// The file's name, which [`LogFile::parse`] reads back.
    #[must_use]
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// The segment id in the name (`None` for [`LogFile::Lock`]).
    #[must_use]
    pub fn segment_id(&self) -> Option<u64> {
        match *self {
            Self::Segment(id)
            | Self::Hint(id)
            | Self::HintTmp(id)
            | Self::FreeSegment(id)
            | Self::CorruptSegment(id) => Some(id),
            Self::Lock => None,
        }
    }

    fn suffix(&self) -> &'static str {
        match self {
            Self::Segment(_) => SEGMENT_SUFFIX,
            Self::Hint(_) => HINT_SUFFIX,
            Self::HintTmp(_) => HINT_TMP_SUFFIX,
            Self::FreeSegment(_) => FREE_SEGMENT_SUFFIX,
            Self::CorruptSegment(_) => CORRUPT_SEGMENT_SUFFIX,
            Self::Lock => "",
        }
    }
}

impl fmt::Display for LogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.segment_id() {
            Some(id) => write!(
                f,
                "{id:0width$x}{}",
                self.suffix(),
                width = SEGMENT_ID_DIGITS
            ),
            None => f.write_str(LOCK_FILE_NAME),
        }
    }
}

/// Exactly [`SEGMENT_ID_DIGITS`] lowercase hex digits, as a segment id.
fn parse_segment_id(hex: &str) -> Option<u64> {
    if hex.len() != SEGMENT_ID_DIGITS {
        return None;
    }
    hex.bytes().try_fold(0u64, |id, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        // 16 digits of 4 bits: never overflows.
        Some(id << 4 | u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [fn(u64) -> LogFile; 5] = [
        LogFile::Segment,
        LogFile::Hint,
        LogFile::HintTmp,
        LogFile::FreeSegment,
        LogFile::CorruptSegment,
    ];

    #[test]
    fn names_match_the_engine_and_the_document() {
        assert_eq!(LogFile::Segment(0x2a).name(), "000000000000002a.seg");
        assert_eq!(LogFile::Hint(0x2a).name(), "000000000000002a.hint");
        assert_eq!(LogFile::HintTmp(0x2a).name(), "000000000000002a.hint.tmp");
        assert_eq!(LogFile::Lock.name(), "LOCK");
        assert_eq!(
            LogFile::FreeSegment(0x2a).name(),
            "000000000000002a.seg.free"
        );
        assert_eq!(
            LogFile::CorruptSegment(u64::MAX).name(),
            "ffffffffffffffff.seg.corrupt"
        );
    }

    #[test]
    fn every_kind_round_trips() {
        for id in [0, 1, 0x2a, 0xdead_beef, u64::MAX >> 1, u64::MAX] {
            for kind in ALL {
                let file = kind(id);
                assert_eq!(LogFile::parse(&file.name()), Some(file));
                assert_eq!(file.segment_id(), Some(id));
            }
        }
        assert_eq!(LogFile::parse("LOCK"), Some(LogFile::Lock));
        assert_eq!(LogFile::Lock.segment_id(), None);
    }

    #[test]
    fn uppercase_hex_is_rejected() {
        for name in [
            "000000000000002A.seg",
            "000000000000002A.hint",
            "000000000000002A.hint.tmp",
            "000000000000002A.seg.free",
            "000000000000002A.seg.corrupt",
            "000000000000002a.SEG",
            "lock",
        ] {
            assert_eq!(LogFile::parse(name), None, "{name}");
        }
    }

    #[test]
    fn wrong_lengths_are_rejected() {
        for name in [
            "2a.seg",
            "00000000000002a.seg",
            "0000000000000002a.seg",
            ".seg",
            "00000000000002a.hint",
            "0000000000000002a.hint.tmp",
            "000000000000002.seg.free",
            "00000000000000002a.seg.corrupt",
        ] {
            assert_eq!(LogFile::parse(name), None, "{name}");
        }
    }

    #[test]
    fn foreign_names_are_none() {
        for name in [
            "",
            "LOCK.tmp",
            "LOCKS",
            " LOCK",
            "000000000000002a",
            "000000000000002a.tmp",
            "000000000000002a.seg.tmp",
            "000000000000002a.seg.hint",
            "000000000000002a.hint.free",
            "+00000000000002a.seg",
            "-00000000000002a.seg",
            "0x0000000000002a.seg",
            " 000000000000002a.seg",
            "000000000000002a.seg ",
            "00000000000000g0.seg",
            "notes.txt",
            "foo.seg.free",
            "ééééééééé.seg",
        ] {
            assert_eq!(LogFile::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn os_names_and_paths() {
        assert_eq!(
            LogFile::parse_os(OsStr::new("000000000000002a.seg")),
            Some(LogFile::Segment(42))
        );
        assert_eq!(
            LogFile::from_path(Path::new("/some/dir/000000000000002a.hint")),
            Some(LogFile::Hint(42))
        );
        assert_eq!(LogFile::from_path(Path::new("/")), None);
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            assert_eq!(LogFile::parse_os(OsStr::from_bytes(b"\xff.seg")), None);
        }
    }
}
