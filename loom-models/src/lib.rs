//! Loom models live in `tests/`; they compile to nothing unless `--cfg seglog_loom` is set.
