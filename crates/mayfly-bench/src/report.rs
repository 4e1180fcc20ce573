//! Printing a benchmark's table, and recording it: as JSON (`<name>.json`, the latest run, and
//! `<name>-runs.json`, every recorded run) and as a section of BENCHMARKS.md generated from
//! those files (`mayfly bench report` regenerates it without measuring).

use super::Summary;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One measured quantity, for Mayfly and for the baseline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// What is measured, with its unit.
    pub metric: String,
    /// Mayfly's figures.
    pub mayfly: Summary,
    /// The baseline's figures, when there is one.
    pub baseline: Option<Summary>,
}

/// A benchmark's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Short name (the section name in BENCHMARKS.md and the JSON file's stem).
    pub name: String,
    /// What was run, how often, against what.
    pub description: String,
    /// The command that produced it.
    pub command: String,
    /// Where and when.
    pub machine: String,
    /// The CPU's model name (/proc/cpuinfo), which every figure depends on.
    #[serde(default)]
    pub cpu: String,
    /// The figures.
    pub rows: Vec<Row>,
    /// Targets checked, as (description, met).
    pub targets: Vec<(String, bool)>,
}

fn ratio(row: &Row) -> String {
    match row.baseline {
        Some(b) if b.p50 > 0.0 => format!("{:.2}x", row.mayfly.p50 / b.p50),
        _ => "-".into(),
    }
}

fn fmt(x: f64) -> String {
    if x >= 1000.0 { format!("{x:.0}") } else { format!("{x:.3}") }
}

impl Row {
    /// Whether higher is better (a rate, `.../s`): its spread is then its worst (lowest) round,
    /// not a 99th percentile.
    pub fn is_rate(&self) -> bool {
        self.metric.ends_with("/s)")
    }
}

impl Report {
    /// The results as a Markdown table (also printed to the terminal).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| metric | Mayfly p50 | Mayfly p99 (rates: min) | baseline p50 | baseline p99 \
             (rates: min) | ratio (p50) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            // For a rate the tail that matters is the slowest round.
            let spread = |s: &Summary| {
                if row.is_rate() { format!("min {}", fmt(s.min)) } else { fmt(s.p99) }
            };
            let (bp50, bp99) =
                row.baseline.map_or(("-".into(), "-".into()), |b| (fmt(b.p50), spread(&b)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.metric,
                fmt(row.mayfly.p50),
                spread(&row.mayfly),
                bp50,
                bp99,
                ratio(row)
            );
        }
        out
    }

    /// The targets as a Markdown list.
    pub fn target_lines(&self) -> String {
        self.targets
            .iter()
            .map(|(what, met)| format!("- {} {what}\n", if *met { "[met]" } else { "[MISSED]" }))
            .collect()
    }

    /// Prints the report to stdout.
    pub fn print(&self) {
        println!("\n{}\n{}\n", self.description, self.machine);
        print!("{}", self.table());
        println!();
        print!("{}", self.target_lines());
    }

    /// Writes `<dir>/<name>.json`, appends the run to `<dir>/<name>-runs.json`, and rewrites
    /// this benchmark's section of `markdown` from them.
    pub fn record(&self, dir: &Path, markdown: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join(format!("{}.json", self.name));
        write_json(&json, self)?;
        let mut runs = load_runs(dir, &self.name)?;
        runs.push(self.clone());
        write_json(&runs_path(dir, &self.name), &runs)?;
        self.write_section(markdown, &runs)?;
        println!(
            "\nrecorded {}, {} and {}",
            json.display(),
            runs_path(dir, &self.name).display(),
            markdown.display()
        );
        Ok(())
    }

    /// The run-to-run paragraph: each target's figure in every recorded run of this command.
    fn run_to_run(&self, runs: &[Report]) -> String {
        let same: Vec<&Report> = runs.iter().filter(|r| r.command == self.command).collect();
        if same.len() < 2 {
            return String::new();
        }
        let mut out = format!(
            "Run to run ({} recorded runs of this command, bench/results/{}-runs.json, oldest \
             first):\n\n",
            same.len(),
            self.name
        );
        for (target, _) in &self.targets {
            let key = target_key(target);
            let seen: Vec<(String, bool)> = same
                .iter()
                .filter_map(|r| r.targets.iter().find(|(t, _)| target_key(t) == key))
                .map(|(t, met)| (target_figure(t).to_owned(), *met))
                .collect();
            let met = seen.iter().filter(|(_, met)| *met).count();
            let figures: Vec<String> = seen
                .iter()
                .map(|(figure, met)| if *met { figure.clone() } else { format!("**{figure}**") })
                .collect();
            let _ = writeln!(
                out,
                "- {key}: met in {met} of {} runs ({})",
                seen.len(),
                figures.join(", ")
            );
        }
        out
    }

    /// Replaces (or appends) this benchmark's section of `markdown`.
    pub fn write_section(&self, markdown: &Path, runs: &[Report]) -> Result<()> {
        let begin = format!("<!-- bench:{} -->", self.name);
        let end = format!("<!-- /bench:{} -->", self.name);
        let cpu = if self.cpu.is_empty() || self.machine.contains(&self.cpu) {
            String::new()
        } else {
            format!(" CPU: {}.", self.cpu)
        };
        let run_to_run = self.run_to_run(runs);
        let section = format!(
            "{begin}\n## `{}`\n\n{}\n\n{}{cpu}\n\nCommand: `{}`\n\n{}\n{}{}{end}",
            self.name,
            self.description,
            self.machine,
            self.command,
            self.table(),
            if self.targets.is_empty() {
                String::new()
            } else {
                format!("\nTargets:\n\n{}", self.target_lines())
            },
            if run_to_run.is_empty() { String::new() } else { format!("\n{run_to_run}") },
        );
        let old = std::fs::read_to_string(markdown)
            .unwrap_or_else(|_| format!("# Benchmarks\n\n{INTRO}\n"));
        let new = match (old.find(&begin), old.find(&end)) {
            (Some(a), Some(b)) if a < b => {
                format!("{}{section}{}", &old[..a], &old[b + end.len()..])
            }
            _ => format!("{}\n{section}\n", old.trim_end()),
        };
        std::fs::write(markdown, new)
            .with_context(|| format!("cannot write {}", markdown.display()))?;
        Ok(())
    }
}

/// What BENCHMARKS.md says of itself.
const INTRO: &str = "Produced by `mayfly bench`; each section is rewritten by its command from the \
    recorded results in bench/results (`mayfly bench report` rewrites them all without \
    measuring). Medians (p50) and 99th percentiles, or for rates (higher is better) the slowest \
    round; ratios are Mayfly's p50 over the baseline's.";

/// A target without its measured figure: `... ≤ 3× native (3.15x)` -> `... ≤ 3× native`.
fn target_key(target: &str) -> &str {
    target.rsplit_once(" (").map_or(target, |(key, _)| key)
}

/// A target's measured figure: `... (3.15x)` -> `3.15x`.
fn target_figure(target: &str) -> &str {
    target.rsplit_once(" (").map_or("", |(_, figure)| figure.trim_end_matches(')'))
}

fn runs_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{name}-runs.json"))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Every recorded run of benchmark `name` (none if the file does not exist yet).
fn load_runs(dir: &Path, name: &str) -> Result<Vec<Report>> {
    let path = runs_path(dir, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a list of recorded runs", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `mayfly bench report`: rewrites the sections of `markdown` from the recorded results in
/// `dir`, measuring nothing.
pub fn regenerate(dir: &Path, markdown: &Path) -> Result<()> {
    let mut found = 0;
    for name in ["boot", "http", "serve"] {
        let json = dir.join(format!("{name}.json"));
        let Ok(text) = std::fs::read_to_string(&json) else { continue };
        let mut report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a recorded report", json.display()))?;
        if report.cpu.is_empty() {
            report.cpu = cpu_from_machine_line(&report.machine);
        }
        let mut runs = load_runs(dir, name)?;
        if runs.is_empty() {
            runs.push(report.clone());
        }
        report.write_section(markdown, &runs)?;
        found += 1;
    }
    anyhow::ensure!(
        found > 0,
        "no recorded results in {}: run `mayfly bench boot|http|serve` first",
        dir.display()
    );
    println!(
        "rewrote {} from {found} recorded benchmarks in {}",
        markdown.display(),
        dir.display()
    );
    Ok(())
}

/// The CPU named by a recorded machine line (`Machine: <cpu>, <n> cores, ...`), for results
/// recorded before the CPU had its own field.
fn cpu_from_machine_line(machine: &str) -> String {
    let rest = machine.strip_prefix("Machine: ").unwrap_or_default();
    let end = rest.find(" cores").and_then(|at| rest[..at].rfind(", ")).unwrap_or(0);
    rest[..end].to_owned()
}

/// This machine's CPU model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// A one-line description of this machine and the date, for the record.
pub fn machine_line() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("Machine: {cpu}, {cores} cores, Linux {}; {date}.", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(command: &str, figure: &str, met: bool) -> Report {
        let s = Summary { n: 3, p50: 10.0, p99: 30.0, min: 5.0, max: 40.0 };
        Report {
            name: "x".into(),
            description: "d".into(),
            command: command.into(),
            machine: "Machine: AMD EPYC 7B13, 2 cores, Linux 6; now.".into(),
            cpu: "AMD EPYC 7B13".into(),
            rows: vec![
                Row { metric: "latency (ms)".into(), mayfly: s, baseline: Some(s) },
                Row { metric: "throughput (req/s)".into(), mayfly: s, baseline: None },
            ],
            targets: vec![(format!("p99 ≤ 3× native ({figure})"), met)],
        }
    }

    #[test]
    fn rates_show_their_worst_round_not_a_p99() {
        let table = report("c", "1x", true).table();
        assert!(table.contains("| latency (ms) | 10.000 | 30.000 |"), "{table}");
        assert!(table.contains("| throughput (req/s) | 10.000 | min 5.000 |"), "{table}");
    }

    #[test]
    fn run_to_run_is_generated_from_the_runs_of_the_same_command() {
        let runs = [
            report("c", "2.10x", true),
            report("other", "9.99x", false),
            report("c", "3.15x", false),
        ];
        let text = runs[2].run_to_run(&runs);
        assert!(text.starts_with("Run to run (2 recorded runs"), "{text}");
        assert!(
            text.contains("- p99 ≤ 3× native: met in 1 of 2 runs (2.10x, **3.15x**)"),
            "{text}"
        );
        assert_eq!(runs[0].run_to_run(&runs[..1]), "");
    }

    #[test]
    fn the_cpu_of_old_records_comes_from_their_machine_line() {
        let line = "Machine: AMD EPYC, 2 cores, Linux 6.18; 2026-11-27 05:01 UTC.";
        assert_eq!(cpu_from_machine_line(line), "AMD EPYC");
        assert_eq!(
            cpu_from_machine_line("Machine: Intel(R) Xeon(R), x, 4 cores, L"),
            "Intel(R) Xeon(R), x"
        );
    }
}
