//! `Log::checkpoint` refuses a destination it must not write, with a clear error, and changes
//! nothing: a non-empty directory, a file, a missing parent, an in-memory log. An empty
//! directory is fine, and a checkpoint's copy does not carry the source's lock.

use seglog::{Error, Log, Options};

fn options() -> Options {
    Options::default().segment_bytes(64 * 1024)
}

fn io_message(result: seglog::Result<()>) -> String {
    match result {
        Err(e @ Error::Io { .. }) => e.to_string(),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn refuses_non_empty_destinations_and_logs_without_files() {
    let root = tempfile::tempdir().unwrap();
    let log = Log::open_with(root.path().join("log"), options()).unwrap();
    log.put(b"k", b"v").unwrap();

    let full = root.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep-me"), b"mine").unwrap();
    let message = io_message(log.checkpoint(&full));
    assert!(message.contains("not empty"), "{message}");
    assert_eq!(std::fs::read(full.join("keep-me")).unwrap(), b"mine");

    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let message = io_message(log.checkpoint(&file));
    assert!(message.contains("is a file"), "{message}");

    let orphan = root.path().join("no-such-parent").join("copy");
    let message = io_message(log.checkpoint(&orphan));
    assert!(
        message.contains("parent directory does not exist"),
        "{message}"
    );

    let message = io_message(log.checkpoint(root.path().join("log")));
    assert!(message.contains("not empty"), "{message}");

    let memory = Log::in_memory(options()).unwrap();
    let message = io_message(memory.checkpoint(root.path().join("from-memory")));
    assert!(message.contains("in-memory"), "{message}");
    assert!(!root.path().join("from-memory").exists());

    // Nothing was left beside the destinations.
    let mut names: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-file", "full", "log"]);
}

#[test]
fn an_empty_destination_directory_is_filled_and_opens_while_the_source_is_open() {
    let root = tempfile::tempdir().unwrap();
    let log = Log::open_with(root.path().join("log"), options()).unwrap();
    for i in 0..2000u32 {
        log.put(&i.to_le_bytes(), &i.to_be_bytes()).unwrap();
    }
    let dest = root.path().join("empty");
    std::fs::create_dir(&dest).unwrap();
    log.checkpoint(&dest).unwrap();
    // The source is still open and locked; the copy opens anyway: its lock is its own.
    let copy = Log::open_with(&dest, options()).unwrap();
    assert_eq!(copy.len(), 2000);
    for i in 0..2000u32 {
        assert_eq!(copy.get(&i.to_le_bytes()).unwrap(), i.to_be_bytes());
    }
    // A second checkpoint to the same place is refused: it is not empty now.
    drop(copy);
    assert!(log.checkpoint(&dest).is_err());
}
