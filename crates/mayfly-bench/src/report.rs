//! Printing a benchmark's table, and recording it as JSON and in BENCHMARKS.md.

use super::Summary;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One measured quantity, for Mayfly and for the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What is measured, with its unit.
    pub metric: String,
    /// Mayfly's figures.
    pub mayfly: Summary,
    /// The baseline's figures, when there is one.
    pub baseline: Option<Summary>,
}

/// A benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Short name (the section name in BENCHMARKS.md and the JSON file's stem).
    pub name: String,
    /// What was run, how often, against what.
    pub description: String,
    /// The command that produced it.
    pub command: String,
    /// Where and when.
    pub machine: String,
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

impl Report {
    /// The results as a Markdown table (also printed to the terminal).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| metric | Mayfly p50 | Mayfly p99 | baseline p50 | baseline p99 | ratio (p50) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for row in &self.rows {
            let (bp50, bp99) =
                row.baseline.map_or(("-".into(), "-".into()), |b| (fmt(b.p50), fmt(b.p99)));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.metric,
                fmt(row.mayfly.p50),
                fmt(row.mayfly.p99),
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

    /// Writes `<dir>/<name>.json` and replaces this benchmark's section of `markdown`.
    pub fn record(&self, dir: &Path, markdown: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join(format!("{}.json", self.name));
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        let begin = format!("<!-- bench:{} -->", self.name);
        let end = format!("<!-- /bench:{} -->", self.name);
        let section = format!(
            "{begin}\n## `{}`\n\n{}\n\n{}\n\nCommand: `{}`\n\n{}\n{}{end}",
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
        );
        let old = std::fs::read_to_string(markdown).unwrap_or_else(|_| {
            "# Benchmarks\n\nProduced by `mayfly bench`; each section is rewritten by its command.\n\
             Medians (p50) and 99th percentiles; ratios are Mayfly's p50 over the baseline's.\n"
                .to_string()
        });
        let new = match (old.find(&begin), old.find(&end)) {
            (Some(a), Some(b)) if a < b => {
                format!("{}{section}{}", &old[..a], &old[b + end.len()..])
            }
            _ => format!("{}\n{section}\n", old.trim_end()),
        };
        std::fs::write(markdown, new)
            .with_context(|| format!("cannot write {}", markdown.display()))?;
        println!("\nrecorded {} and {}", json.display(), markdown.display());
        Ok(())
    }
}

/// A one-line description of this machine and the date, for the record.
pub fn machine_line() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("Machine: {cpu}, {cores} cores, Linux {}; {date}.", kernel.trim())
}
