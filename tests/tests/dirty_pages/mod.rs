//! Which pages of a log's segment files are still dirty in the page cache, from
//! `/proc/self/smaps`: after a sync, a page the sync was meant to cover must not be dirty any
//! more (`msync` writes it back and cleans it).

use std::collections::BTreeMap;
use std::path::Path;

/// Dirty kilobytes (`Shared_Dirty` + `Private_Dirty`) of every mapping of this process that
/// maps a segment file (`*.seg`) of `dir`, by file name.
pub fn dirty_kb_by_segment(dir: &Path) -> BTreeMap<String, u64> {
    let dir = dir.canonicalize().expect("log directory");
    let mut dirty = BTreeMap::new();
    for mapping in mappings() {
        let path = Path::new(&mapping.path);
        let is_segment =
            path.parent() == Some(dir.as_path()) && path.extension().is_some_and(|e| e == "seg");
        if is_segment {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            *dirty.entry(name).or_insert(0) += mapping.dirty_kb;
        }
    }
    dirty
}

/// The mappings among `dirty` that have dirty pages, as "name: N kB" (empty if none).
pub fn describe_dirty(dirty: &BTreeMap<String, u64>) -> String {
    dirty
        .iter()
        .filter(|(_, kb)| **kb > 0)
        .map(|(name, kb)| format!("{name}: {kb} kB"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the page-cache page holding byte 0 of `file` (a segment's header) is dirty. Maps
/// that one page of the file read-only and faults it in: the page cache page is shared with
/// the log's own mapping, and smaps counts a page as dirty if the page itself is dirty, so
/// this is exact for that page even when the rest of the log's mapping is legitimately dirty
/// (prefaulting populates every page of a new segment for writing).
pub fn first_page_dirty(file: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(file).expect("segment file");
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh read-only shared mapping of the file's first page; nothing else in this
    // process refers to the new address range.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page,
            libc::PROT_READ,
            libc::MAP_SHARED,
            handle.as_raw_fd(),
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap of {}", file.display());
    // SAFETY: `base` is the start of the one-page mapping just created, readable; a volatile
    // read so the fault really happens.
    let _ = unsafe { std::ptr::read_volatile(base.cast::<u8>()) };
    let start = base as usize;
    let dirty_kb = mappings()
        .into_iter()
        .find(|m| m.start == start)
        .expect("our own mapping is in smaps")
        .dirty_kb;
    // SAFETY: unmaps exactly the mapping created above; no reference into it is left.
    unsafe { libc::munmap(base, page) };
    dirty_kb > 0
}

struct Mapping {
    start: usize,
    path: String,
    dirty_kb: u64,
}

fn mappings() -> Vec<Mapping> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, _end)) = first.split_once('-')
            && !first.ends_with(':')
            && let Ok(start) = usize::from_str_radix(start, 16)
        {
            // "start-end perms offset dev inode   path": a file's path is the first word that
            // starts with '/'.
            let path = line.find(" /").map_or("", |at| &line[at + 1..]);
            out.push(Mapping {
                start,
                path: path.trim().to_string(),
                dirty_kb: 0,
            });
            continue;
        }
        if first == "Shared_Dirty:" || first == "Private_Dirty:" {
            let kb: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if let Some(mapping) = out.last_mut() {
                mapping.dirty_kb += kb;
            }
        }
    }
    out
}
