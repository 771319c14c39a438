//! `seglog bench`: the main job. Runs the seed's five concurrent scenarios (task 017's
//! performance table) on seglog and on the seed design rebuilt as the baseline, side by side,
//! and prints one table: duration, ops/s, p50, p99, the seed's target, and seglog ÷ baseline.
//!
//! Each scenario runs `rounds` times on each engine, each round on a fresh engine (seglog: a
//! file-backed log in a new temporary directory; the baseline: a new mapped file). The duration
//! shown is the median round's; p50 and p99 are over every operation of every round. At the
//! seed's sizes a round lasts about a millisecond and thread wake-ups weigh heavily, so the full
//! run also repeats every scenario at 100× the operations (`--scale`), where throughput shows.
//! The scenario code is `seglog_benches::scenarios`.

use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use seglog_benches::scenarios::{Engine, Scenario, quantile};
use serde::Serialize;

use crate::Failure;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print JSON (for machines and scripts/bench-chart.py) instead of the table.
    #[arg(long)]
    json: bool,
    /// A short run for CI, a few seconds: 2 rounds at the seed's sizes, no scaled pass.
    #[arg(long)]
    quick: bool,
    /// Rounds per scenario and engine at the seed's sizes [default: 15; 2 with --quick].
    #[arg(long)]
    rounds: Option<u32>,
    /// Operations multiplier of the second pass, 0 to skip it [default: 100; 0 with --quick].
    #[arg(long)]
    scale: Option<u64>,
    /// Rounds of the scaled pass.
    #[arg(long, default_value_t = 3)]
    scaled_rounds: u32,
}

/// One scenario on one engine.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    scenario: &'static str,
    engine: &'static str,
    scale: u64,
    threads: usize,
    ops: u64,
    rounds: u32,
    /// Median round, seconds.
    duration_s: f64,
    ops_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    /// The seed's target for the scenario at scale 1 (duration, p99).
    target_duration_s: f64,
    target_p99_ms: f64,
    /// Whether the run met the seed's targets (only judged at scale 1).
    meets_target: Option<bool>,
    /// Check failures (lost or wrong records) across all rounds.
    errors: usize,
}

/// seglog against the baseline on one scenario.
#[derive(Debug, Clone, Serialize)]
struct Ratio {
    scenario: &'static str,
    scale: u64,
    /// seglog ops/s ÷ baseline ops/s (above 1: seglog is faster).
    ops_per_s: f64,
    /// seglog p99 ÷ baseline p99 (below 1: seglog's tail is shorter).
    p99: f64,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cpus: usize,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct Output {
    machine: Machine,
    results: Vec<Measured>,
    ratios: Vec<Ratio>,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| std::env::consts::OS.into());
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        kernel,
    }
}

fn measure(
    scenario: Scenario,
    engine: Engine,
    scale: u64,
    rounds: u32,
    progress: &indicatif::ProgressBar,
) -> Result<Measured, Failure> {
    let mut durations = Vec::with_capacity(rounds as usize);
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for _ in 0..rounds {
        progress.set_message(format!(
            "{} ×{scale} on {}",
            scenario.label(),
            engine.label()
        ));
        let store = scenario.engine(engine, scale).map_err(Failure)?;
        let mut outcome = scenario.run(store.as_ref(), scale);
        drop(store);
        durations.push(outcome.duration);
        latencies.append(&mut outcome.latencies_ns);
        errors.append(&mut outcome.errors);
        progress.inc(1);
    }
    durations.sort();
    latencies.sort_unstable();
    let duration = durations[durations.len() / 2];
    let (p50, p99) = (quantile(&latencies, 0.50), quantile(&latencies, 0.99));
    let target = scenario.target();
    if let Some(first) = errors.first() {
        progress.suspend(|| {
            eprintln!(
                "seglog: {} on {} lost or damaged records ({} failures); first: {first}",
                scenario.label(),
                engine.label(),
                errors.len()
            );
        });
    }
    Ok(Measured {
        scenario: scenario.label(),
        engine: engine.label(),
        scale,
        threads: scenario.threads(),
        ops: scenario.ops(scale),
        rounds,
        duration_s: duration.as_secs_f64(),
        ops_per_s: scenario.ops(scale) as f64 / duration.as_secs_f64(),
        p50_us: p50.as_secs_f64() * 1e6,
        p99_us: p99.as_secs_f64() * 1e6,
        target_duration_s: target.duration.as_secs_f64(),
        target_p99_ms: target.p99.as_secs_f64() * 1e3,
        meets_target: (scale == 1)
            .then(|| errors.is_empty() && duration < target.duration && p99 < target.p99),
        errors: errors.len(),
    })
}

pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    let rounds = args
        .rounds
        .unwrap_or(if args.quick { 2 } else { 15 })
        .max(1);
    let scale = args.scale.unwrap_or(if args.quick { 0 } else { 100 });
    let mut passes = vec![(1, rounds)];
    if scale > 1 {
        passes.push((scale, args.scaled_rounds.max(1)));
    }
    let steps: u64 = passes
        .iter()
        .map(|&(_, r)| u64::from(r) * (Scenario::ALL.len() * Engine::ALL.len()) as u64)
        .sum();
    let progress = indicatif::ProgressBar::new(steps).with_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} rounds  {msg}  {elapsed}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(100));

    let mut results = Vec::new();
    let mut ratios = Vec::new();
    for &(scale, rounds) in &passes {
        for scenario in Scenario::ALL {
            let seglog = measure(scenario, Engine::Seglog, scale, rounds, &progress)?;
            let baseline = measure(scenario, Engine::SeedDesign, scale, rounds, &progress)?;
            ratios.push(Ratio {
                scenario: scenario.label(),
                scale,
                ops_per_s: seglog.ops_per_s / baseline.ops_per_s,
                p99: seglog.p99_us / baseline.p99_us,
            });
            results.push(seglog);
            results.push(baseline);
        }
    }
    progress.finish_and_clear();

    let output = Output {
        machine: machine(),
        results,
        ratios,
    };
    let failures: usize = output.results.iter().map(|m| m.errors).sum();
    let mut out = io::stdout().lock();
    let written = if args.json {
        serde_json::to_string_pretty(&output)
            .map_err(io::Error::other)
            .and_then(|json| writeln!(out, "{json}"))
    } else {
        write_table(&mut out, &output)
    };
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        other => other.map_err(|e| Failure(format!("writing output: {e}")))?,
    }
    if failures > 0 {
        return Err(Failure(format!(
            "{failures} records were lost or damaged (see above): a bug, not a slow machine"
        )));
    }
    Ok(())
}

/// `1.23 ms`-style durations from seconds.
fn duration(seconds: f64) -> String {
    let (value, unit) = if seconds >= 1.0 {
        (seconds, "s")
    } else if seconds >= 1e-3 {
        (seconds * 1e3, "ms")
    } else {
        (seconds * 1e6, "µs")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} K", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

fn write_table(out: &mut impl Write, output: &Output) -> io::Result<()> {
    let m = &output.machine;
    writeln!(
        out,
        "seglog bench: the seed's five scenarios (task 017), seglog vs the seed design\n\
         machine: {} ({} CPUs), Linux {}\n",
        m.cpu, m.cpus, m.kernel
    )?;
    writeln!(
        out,
        "{:<17} {:>7} {:>9}  {:<11} {:>9} {:>9} {:>9} {:>9}  {:<17} {:<6}  seglog/baseline",
        "scenario",
        "threads",
        "ops",
        "engine",
        "duration",
        "ops/s",
        "p50",
        "p99",
        "seed target",
        "target"
    )?;
    let mut scale = 0;
    for pair in output.results.chunks(2) {
        let (seglog, baseline) = (&pair[0], &pair[1]);
        if seglog.scale != scale {
            scale = seglog.scale;
            writeln!(
                out,
                "-- {} --",
                if scale == 1 {
                    format!(
                        "the seed's sizes, median of {} rounds (duration), all ops (p50, p99)",
                        seglog.rounds
                    )
                } else {
                    format!(
                        "{scale}× the seed's operations, median of {} rounds",
                        seglog.rounds
                    )
                }
            )?;
        }
        let ratio = output
            .ratios
            .iter()
            .find(|r| r.scenario == seglog.scenario && r.scale == seglog.scale)
            .expect("a ratio per scenario and scale");
        for (i, row) in [seglog, baseline].into_iter().enumerate() {
            let target = if i == 0 && row.scale == 1 {
                format!(
                    "<{}, p99<{}",
                    duration(row.target_duration_s),
                    duration(row.target_p99_ms / 1e3)
                )
            } else {
                String::new()
            };
            let met = match row.meets_target {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            let comparison = if i == 0 {
                format!("ops/s ×{:.2}, p99 ×{:.2}", ratio.ops_per_s, ratio.p99)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<17} {:>7} {:>9}  {:<11} {:>9} {:>9} {:>9} {:>9}  {:<17} {:<6}  {comparison}",
                if i == 0 { row.scenario } else { "" },
                if i == 0 {
                    row.threads.to_string()
                } else {
                    String::new()
                },
                if i == 0 {
                    row.ops.to_string()
                } else {
                    String::new()
                },
                row.engine,
                duration(row.duration_s),
                rate(row.ops_per_s),
                duration(row.p50_us / 1e6),
                duration(row.p99_us / 1e6),
                target,
                met,
            )?;
        }
    }
    writeln!(
        out,
        "\nseglog/baseline: ops/s × above 1 and p99 × below 1 favour seglog. The seed's own \
         figures (its machine): concurrent get p50 2.08 µs, p99 5.42 µs; hot-spot p99 22.42 µs."
    )
}
