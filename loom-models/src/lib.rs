//! Loom models of seglog's own code. They compile to nothing unless `--cfg seglog_loom` (with
//! `--cfg crossbeam_loom`) is set; `scripts/loom.sh` runs them. See `docs/loom.md`.

/// Runs `f` under loom with this project's bounds: the preemption bound from
/// `LOOM_MAX_PREEMPTIONS` (CI sets 2), and room for the bounded waits of a roll-over.
#[cfg(seglog_loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.max_branches = builder.max_branches.max(100_000);
    builder.check(f);
}
