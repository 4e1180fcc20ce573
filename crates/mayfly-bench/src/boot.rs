//! `mayfly bench boot`: how fast a unikernel boots, against a native static Linux process doing
//! the same work (the comparison LightVM makes), interleaved in one run.
//!
//! Per run: process spawn to the guest's `main` (the monitor's `--timings` give the moment of
//! guest entry, hello prints how long after entry its `main` started); spawn to guest exit; the
//! whole process (spawn to reaped); peak RSS (`VmHWM`, reported by each program itself: the
//! `ru_maxrss` of `wait4` would count the benchmark's own pages shared before `exec`). Plus the
//! stripped image size.

use super::report::machine_line;
use super::{Report, Row, Summary, number_after};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Settings of the boot benchmark.
#[derive(Debug, Clone)]
pub struct BootBench {
    /// Measured runs of each side (after warm-up).
    pub runs: usize,
    /// Guest memory, MiB.
    pub mem_mib: u64,
    /// The hello guest crate.
    pub hello_crate: PathBuf,
    /// The native baseline crate.
    pub native_crate: PathBuf,
    /// Cargo target directory for both builds.
    pub target_dir: PathBuf,
}

/// One run's measurements, in milliseconds (RSS in KiB).
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    to_main: f64,
    to_exit: f64,
    whole: f64,
    rss_kib: f64,
}

fn monotonic_ns() -> u64 {
    mayfly_monitor::sys::monotonic_ns()
}

struct Finished {
    stdout: String,
    stderr: String,
    code: Option<i32>,
    spawn_ns: u64,
    end_ns: u64,
}

fn spawn_and_reap(cmd: &mut Command) -> Result<Finished> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_ns = monotonic_ns();
    let child = cmd.spawn().context("cannot spawn the benchmark's process")?;
    let out = child.wait_with_output()?;
    let end_ns = monotonic_ns();
    Ok(Finished {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        spawn_ns,
        end_ns,
    })
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn run_unikernel(mayfly: &Path, image: &Path, mem_mib: u64) -> Result<Sample> {
    let f = spawn_and_reap(Command::new(mayfly).arg("run").arg(image).args([
        "--mem",
        &mem_mib.to_string(),
        "--timings",
        "--",
        "0",
    ]))?;
    if f.code != Some(0) || !f.stdout.contains("Hello from a Mayfly unikernel!") {
        bail!("the unikernel run failed (status {:?}): {}", f.code, f.stderr.trim());
    }
    let entered = number_after(&f.stderr, "entered_ns=").context("no timings from mayfly run")?;
    let stopped = number_after(&f.stderr, "stopped_ns=").context("no timings from mayfly run")?;
    let main_after =
        number_after(&f.stdout, "main started ").context("hello printed no start time")?;
    Ok(Sample {
        to_main: ms((entered + main_after).saturating_sub(f.spawn_ns)),
        to_exit: ms(stopped.saturating_sub(f.spawn_ns)),
        whole: ms(f.end_ns - f.spawn_ns),
        rss_kib: number_after(&f.stderr, "peak_rss_kib=").context("no peak RSS")? as f64,
    })
}

fn run_native(native: &Path) -> Result<Sample> {
    let f = spawn_and_reap(Command::new(native).arg("0"))?;
    if f.code != Some(0) {
        bail!("the native baseline failed (status {:?}): {}", f.code, f.stderr.trim());
    }
    let main = number_after(&f.stdout, "main started at monotonic ").context("no start time")?;
    let exit = number_after(&f.stdout, "exiting at monotonic ").context("no exit time")?;
    Ok(Sample {
        to_main: ms(main.saturating_sub(f.spawn_ns)),
        to_exit: ms(exit.saturating_sub(f.spawn_ns)),
        whole: ms(f.end_ns - f.spawn_ns),
        rss_kib: number_after(&f.stdout, "peak_rss_kib=").context("no peak RSS")? as f64,
    })
}

fn summary(samples: &[Sample], pick: fn(&Sample) -> f64) -> Result<Summary> {
    Summary::of(&samples.iter().map(pick).collect::<Vec<_>>()).context("no samples")
}

impl BootBench {
    /// Builds both programs, runs them interleaved, and returns the report.
    pub fn run(&self) -> Result<Report> {
        let super::Contestants { image, native } = super::build_contestants(
            "mayfly bench boot",
            &self.hello_crate,
            &self.native_crate,
            "native-hello",
            &self.target_dir,
        )?;
        let mayfly = super::mayfly_binary()?;

        let warmup = 5.min(self.runs);
        let mut uni = Vec::with_capacity(self.runs);
        let mut nat = Vec::with_capacity(self.runs);
        for i in 0..warmup + self.runs {
            // Which side runs first alternates, so that neither always follows the other.
            let (u, n) = if i.is_multiple_of(2) {
                let u = run_unikernel(&mayfly, &image.path, self.mem_mib)?;
                (u, run_native(&native)?)
            } else {
                let n = run_native(&native)?;
                (run_unikernel(&mayfly, &image.path, self.mem_mib)?, n)
            };
            if i >= warmup {
                uni.push(u);
                nat.push(n);
            }
            if (i + 1) % 50 == 0 {
                eprintln!("  {} / {} runs", i + 1, warmup + self.runs);
            }
        }

        let native_size = std::fs::metadata(&native)?.len() as f64;
        let size = |x: f64| Summary { n: 1, p50: x, p99: x, min: x, max: x };
        let rows = vec![
            Row {
                metric: "spawn → main (ms)".into(),
                mayfly: summary(&uni, |s| s.to_main)?,
                baseline: Some(summary(&nat, |s| s.to_main)?),
            },
            Row {
                metric: "spawn → exit (ms)".into(),
                mayfly: summary(&uni, |s| s.to_exit)?,
                baseline: Some(summary(&nat, |s| s.to_exit)?),
            },
            Row {
                metric: "whole process (ms)".into(),
                mayfly: summary(&uni, |s| s.whole)?,
                baseline: Some(summary(&nat, |s| s.whole)?),
            },
            Row {
                metric: "peak RSS (KiB)".into(),
                mayfly: summary(&uni, |s| s.rss_kib)?,
                baseline: Some(summary(&nat, |s| s.rss_kib)?),
            },
            Row {
                metric: "stripped image (bytes)".into(),
                mayfly: size(image.size as f64),
                baseline: Some(size(native_size)),
            },
        ];
        let (to_main, whole, rss) = (rows[0].mayfly, rows[2].mayfly, rows[3].mayfly);
        let native_whole = rows[2].baseline.map_or(f64::NAN, |b| b.p50);
        let targets = vec![
            (
                format!("stripped hello image ≤ 64 KiB ({} bytes)", image.size),
                image.size <= 64 * 1024,
            ),
            (
                format!("spawn → guest main p50 ≤ 2.5 ms ({:.3} ms)", to_main.p50),
                to_main.p50 <= 2.5,
            ),
            (
                format!("whole `mayfly run hello` p50 ≤ 4 ms ({:.3} ms)", whole.p50),
                whole.p50 <= 4.0,
            ),
            (
                format!("whole run ≤ 4× the native process ({:.2}x)", whole.p50 / native_whole),
                whole.p50 <= 4.0 * native_whole,
            ),
            (
                format!(
                    "monitor peak RSS ≤ 4 MiB with a {} MiB guest ({:.0} KiB)",
                    self.mem_mib, rss.p50
                ),
                rss.p50 <= 4096.0,
            ),
        ];
        Ok(Report {
            name: "boot".into(),
            description: format!(
                "Boot: `mayfly run hello` ({} MiB guest) against the same work as a native static \
                 Linux process, {} runs each, interleaved (which side goes first alternates), after \
                 {warmup} warm-up runs.",
                self.mem_mib, self.runs
            ),
            command: format!("mayfly bench boot --runs {} --mem {}", self.runs, self.mem_mib),
            machine: machine_line(),
            cpu: super::report::cpu_model(),
            rows,
            targets,
        })
    }
}
