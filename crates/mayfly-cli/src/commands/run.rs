//! `mayfly run <image> [--mem MiB] [--timeout s] [--env K=V]... [-- args...]`

use anyhow::{Context, Result, bail};
use mayfly_monitor::image::MAX_IMAGE_SIZE;
use mayfly_monitor::{Instance, VmConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Boot a unikernel image; its console goes to stdout and its exit status becomes ours.
#[derive(clap::Args)]
pub struct Args {
    /// The image (built by `mayfly build`), or a guest crate's directory to build and run.
    image: PathBuf,
    /// Guest memory in MiB (a multiple of 2, from 4 to 4096).
    #[arg(long, default_value_t = 64, value_name = "MiB")]
    mem: u64,
    /// Stop the guest after this many seconds (fractions allowed) and exit with status 124.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Set an environment entry in the guest (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Print boot timings (CLOCK_MONOTONIC ns) to stderr when the guest stops.
    #[arg(long)]
    timings: bool,
    /// Arguments for the guest.
    #[arg(last = true)]
    guest_args: Vec<String>,
}

fn parse_env(entry: &str) -> Result<(String, String), String> {
    match entry.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{entry:?} is not KEY=VALUE")),
    }
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let start_ns = mayfly_monitor::sys::monotonic_ns();
    let timeout = match args.timeout {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--timeout {s} is not a positive number of seconds"),
    };
    let mem_size = args
        .mem
        .checked_mul(1 << 20)
        .with_context(|| format!("--mem {} MiB is too large", args.mem))?;
    let image = if args.image.join("Cargo.toml").is_file() {
        let built = mayfly_cli::builder::build(&mayfly_cli::builder::BuildRequest {
            crate_dir: args.image.clone(),
            output: None,
            target_dir: None,
            keep_symbols: false,
        })?;
        eprintln!("mayfly: built {} ({} bytes)", built.path.display(), built.size);
        built.path
    } else {
        args.image.clone()
    };
    let bytes = read_image(&image)?;
    let name = args.image.file_stem().map_or("guest".into(), |s| s.to_string_lossy().into_owned());
    let mut guest_args = vec![name];
    guest_args.extend(args.guest_args);
    let config = VmConfig { mem_size, timeout, args: guest_args, env: args.env };
    let instance = Instance::prepare(&bytes, &config)
        .with_context(|| format!("cannot boot {}", image.display()))?;
    let report = instance.run(&mut std::io::stdout().lock())?;
    if args.timings {
        let t = report.timings;
        eprintln!(
            "mayfly-timings: start_ns={start_ns} entered_ns={} first_hypercall_ns={} stopped_ns={} \
             peak_rss_kib={}",
            t.entered_ns,
            t.first_hypercall_ns.unwrap_or(0),
            t.stopped_ns,
            peak_rss_kib().unwrap_or(0)
        );
    }
    if let Some(diagnosis) = report.outcome.diagnosis() {
        eprintln!("mayfly: {diagnosis}");
    }
    Ok(ExitCode::from(report.outcome.exit_status()))
}

/// This process's peak resident set size (`VmHWM`: of this program's memory only, unlike
/// `ru_maxrss`, which also counts the parent's pages shared before `exec`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read_image(path: &std::path::Path) -> Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{} is not a file; give the path of an image built by `mayfly build`",
            path.display()
        );
    }
    if meta.len() > MAX_IMAGE_SIZE {
        bail!(
            "{} is {} MiB; images are at most {} MiB",
            path.display(),
            meta.len() >> 20,
            MAX_IMAGE_SIZE >> 20
        );
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
