//! Shared workload code for the benchmarks and `seglog bench`.
