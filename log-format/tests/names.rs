//! Property tests of log directory file names: every name the crate makes reads back as what
//! made it, every name it accepts is the one it would make, and no string makes it panic.

use proptest::prelude::*;
use seglog_format::LogFile;

fn log_file() -> impl Strategy<Value = LogFile> {
    prop_oneof![
        any::<u64>().prop_map(LogFile::Segment),
        any::<u64>().prop_map(LogFile::Hint),
        any::<u64>().prop_map(LogFile::HintTmp),
        any::<u64>().prop_map(LogFile::FreeSegment),
        any::<u64>().prop_map(LogFile::CorruptSegment),
        Just(LogFile::Lock),
    ]
}

const SUFFIXES: [&str; 7] = [
    ".seg",
    ".hint",
    ".hint.tmp",
    ".seg.free",
    ".seg.corrupt",
    ".tmp",
    "",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn every_name_round_trips(file in log_file()) {
        let name = file.name();
        prop_assert_eq!(LogFile::parse(&name), Some(file));
        prop_assert_eq!(file.to_string(), name);
    }

    #[test]
    fn accepted_names_are_canonical(name in any::<String>()) {
        if let Some(file) = LogFile::parse(&name) {
            prop_assert_eq!(file.name(), name);
        }
    }

    #[test]
    fn hex_names_are_accepted_only_when_lowercase_and_16_digits(
        digits in "[0-9a-fA-FgG+-]{0,18}",
        suffix in 0..SUFFIXES.len(),
    ) {
        let name = format!("{digits}{}", SUFFIXES[suffix]);
        let canonical = digits.len() == 16
            && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && suffix < 5;
        match LogFile::parse(&name) {
            Some(file) => {
                prop_assert!(canonical, "{name} accepted");
                prop_assert_eq!(file.segment_id(), u64::from_str_radix(&digits, 16).ok());
            }
            None => prop_assert!(!canonical, "{name} refused"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(&bytes);
        let _ = LogFile::parse_os(name);
        let _ = LogFile::from_path(std::path::Path::new(name));
    }
}
