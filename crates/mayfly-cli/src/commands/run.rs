//! `mayfly run <image> [--mem MiB] [--timeout s] [--env K=V]... [--snapshot-out FILE |
//! --from-snapshot FILE] [-- args...]`

use anyhow::{Context, Result, bail};
use mayfly_monitor::image::MAX_IMAGE_SIZE;
use mayfly_monitor::net::{HostAddr, NetConfig, Publish};
use mayfly_monitor::{Instance, VmConfig};
use mayfly_protocol::standby::{self, MonitorLine};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Boot a unikernel image; its console goes to stdout and its exit status becomes ours.
#[derive(clap::Args)]
pub struct Args {
    /// The image (built by `mayfly build`), or a guest crate's directory to build and run.
    image: PathBuf,
    /// Guest memory in MiB (a multiple of 2, from 4 to 4096). Default: a guest crate's
    /// `[package.metadata.mayfly] memory_mib`, else 64.
    #[arg(long, value_name = "MiB")]
    mem: Option<u64>,
    /// Stop the guest after this many seconds (fractions allowed) and exit with status 124.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Set an environment entry in the guest (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Print boot timings (CLOCK_MONOTONIC ns) to stderr when the guest stops.
    #[arg(long)]
    timings: bool,
    /// Publish a guest TCP port on the host: `[ADDR:]HOST_PORT:GUEST_PORT` (ADDR defaults to
    /// 127.0.0.1; HOST_PORT 0 picks a free port), or on a Unix socket: `unix:PATH:GUEST_PORT`
    /// (created now, removed at exit; PATH must not exist). No tap and no privileges needed.
    #[arg(long, short = 'p', value_name = "[ADDR:]HOST:GUEST", value_parser = parse_publish)]
    publish: Vec<Publish>,
    /// Let the guest connect to this host loopback port, as 10.0.2.2:PORT (repeatable).
    #[arg(long, value_name = "PORT")]
    allow_host_port: Vec<u16>,
    /// Most connections carried to the guest at once (user-mode networking); further ones are
    /// closed at once.
    #[arg(long, value_name = "N", default_value_t = mayfly_monitor::net::usernet::MAX_CONNECTIONS)]
    max_connections: usize,
    /// Connect the guest to a tap device instead (`tap` or `tap=NAME`); needs CAP_NET_ADMIN to
    /// create it. Use with --ip.
    #[arg(long, value_name = "tap[=NAME]", value_parser = parse_net)]
    net: Option<TapSpec>,
    /// The guest's address on the tap network, e.g. 10.0.0.2/24.
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = parse_cidr)]
    ip: Option<([u8; 4], u8)>,
    /// The guest's default gateway on the tap network.
    #[arg(long, value_name = "ADDR")]
    gateway: Option<std::net::Ipv4Addr>,
    /// The guest's MAC address on the tap network, e.g. 02:42:0a:58:00:05 (default: a random
    /// locally administered one). A pod's guest takes eth0's (containerd-shim-mayfly-v2).
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    mac: Option<[u8; 6]>,
    /// Prepare everything (image loaded, VM created, ports published), then wait for a line
    /// `go` on stdin before entering the guest; end of input exits without running it. Used by
    /// `mayfly serve` to keep VM shells ready ahead of demand.
    #[arg(long)]
    standby: bool,
    /// Stop the guest once it has printed this many bytes (exit status 139).
    #[arg(long, value_name = "BYTES")]
    console_limit: Option<u64>,
    /// Show at most this many bytes of console output per second; the excess is dropped (and
    /// said so).
    #[arg(long, value_name = "BYTES")]
    console_rate: Option<u64>,
    /// Stop the guest after this many seconds of CPU time (exit status 152).
    #[arg(long, value_name = "SECONDS")]
    cpu_limit: Option<u64>,
    /// Do not confine the monitor with its seccomp filter (for debugging the monitor).
    #[arg(long)]
    no_sandbox: bool,
    /// Test hook: once sandboxed, make this forbidden system call (the filter must stop us):
    /// getppid, ioctl, ioctl-fionbio, socket-tcp, socket-udp, socket-unix, connect, mmap-exec,
    /// fcntl, open.
    #[arg(long, hide = true, value_name = "CALL")]
    sandbox_selftest: Option<mayfly_monitor::sandbox::SelfTest>,
    /// At the guest's first wait for I/O (a service: listening, before any connection), write a
    /// snapshot of it to FILE (mode 0600: it holds the guest's memory) and stop it, exit status
    /// 0. Start clones of it with --from-snapshot.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from_snapshot", "standby"])]
    snapshot_out: Option<PathBuf>,
    /// Resume a clone of the snapshot FILE (made from this image with --snapshot-out) instead
    /// of booting. Its memory is shared copy-on-write with every other clone of FILE; its
    /// arguments, environment and memory size are the snapshot's; networking, limits and the
    /// sandbox are this run's. It gets its own entropy and the current time.
    #[arg(long, value_name = "FILE")]
    from_snapshot: Option<PathBuf>,
    /// Attach a volume (a block device) backed by FILE: `FILE`, `FILE:ro` (read-only), or
    /// `FILE:size=64M` (created at that size if missing). The image must declare a block device
    /// (the `block` feature of the mayfly crate).
    #[arg(long, value_name = "FILE[:ro|:size=N]", conflicts_with_all = ["snapshot_out", "from_snapshot"])]
    volume: Option<String>,
    /// Arguments for the guest.
    #[arg(last = true)]
    guest_args: Vec<String>,
}

fn parse_publish(spec: &str) -> Result<Publish, String> {
    let bad = || {
        format!(
            "{spec:?} is not [ADDR:]HOST_PORT:GUEST_PORT (e.g. 8080:80) or unix:PATH:GUEST_PORT"
        )
    };
    let (rest, guest) = spec.rsplit_once(':').ok_or_else(bad)?;
    let guest_port: u16 = guest.parse().map_err(|_| bad())?;
    if guest_port == 0 {
        return Err(format!("{spec:?}: the guest port must not be 0"));
    }
    if let Some(path) = rest.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{spec:?}: give the Unix socket's path after `unix:`"));
        }
        return Ok(Publish { host: HostAddr::Unix(path.into()), guest_port });
    }
    let (addr, host) = match rest.rsplit_once(':') {
        Some((addr, host)) => (addr.parse().map_err(|_| bad())?, host),
        None => (std::net::Ipv4Addr::LOCALHOST, rest),
    };
    let host_port: u16 = host.parse().map_err(|_| bad())?;
    Ok(Publish { host: HostAddr::Tcp(std::net::SocketAddr::from((addr, host_port))), guest_port })
}

/// `--net tap[=NAME]`: the tap's name, if given.
#[derive(Debug, Clone)]
struct TapSpec(Option<String>);

fn parse_net(spec: &str) -> Result<TapSpec, String> {
    match spec.split_once('=') {
        None if spec == "tap" => Ok(TapSpec(None)),
        Some(("tap", name)) if !name.is_empty() && name.len() < 16 => {
            Ok(TapSpec(Some(name.to_owned())))
        }
        _ => Err(format!("{spec:?} is not `tap` or `tap=NAME` (NAME: at most 15 characters)")),
    }
}

fn parse_mac(spec: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{spec:?} is not a unicast MAC address, e.g. 02:42:0a:58:00:05");
    let mut mac = [0u8; 6];
    let mut parts = spec.split(':');
    for byte in &mut mac {
        let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 {
        return Err(bad());
    }
    Ok(mac)
}

fn parse_cidr(spec: &str) -> Result<([u8; 4], u8), String> {
    let bad = || format!("{spec:?} is not an IPv4 address with a prefix, e.g. 10.0.0.2/24");
    let (addr, prefix) = spec.split_once('/').ok_or_else(bad)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().ok().filter(|p| (1..=32).contains(p)).ok_or_else(bad)?;
    Ok((addr.octets(), prefix))
}

fn net_config(args: &Args) -> Result<Option<NetConfig>> {
    match &args.net {
        Some(TapSpec(name)) => {
            if !args.publish.is_empty() || !args.allow_host_port.is_empty() {
                bail!(
                    "--publish and --allow-host-port are for user-mode networking, not --net tap"
                );
            }
            let (ip, prefix_len) =
                args.ip.context("--net tap needs the guest's address: add --ip ADDR/PREFIX")?;
            Ok(Some(NetConfig::Tap {
                name: name.clone(),
                ip,
                prefix_len,
                gateway: args.gateway.map(|g| g.octets()),
                mac: args.mac,
            }))
        }
        None if args.ip.is_some() || args.gateway.is_some() || args.mac.is_some() => {
            bail!(
                "--ip, --gateway and --mac apply to --net tap; user-mode networking sets them itself"
            )
        }
        None if args.publish.is_empty() && args.allow_host_port.is_empty() => Ok(None),
        None => Ok(Some(NetConfig::User {
            publish: args.publish.clone(),
            allow_host_ports: args.allow_host_port.clone(),
            max_connections: args.max_connections,
        })),
    }
}

pub(super) fn parse_env(entry: &str) -> Result<(String, String), String> {
    match entry.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{entry:?} is not KEY=VALUE")),
    }
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let start_ns = mayfly_monitor::sys::monotonic_ns();
    // A monitor holds only what it opens itself (no descriptor leaks in from its parent).
    mayfly_monitor::sys::close_inherited_fds();
    let timeout = match args.timeout {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Some(Duration::from_secs_f64(s)),
        Some(s) => bail!("--timeout {s} is not a positive number of seconds"),
    };
    let mem = match args.mem {
        Some(mem) => mem,
        None => mayfly_cli::builder::memory_mib(&args.image)?.unwrap_or(64),
    };
    let mem_size =
        mem.checked_mul(1 << 20).with_context(|| format!("--mem {mem} MiB is too large"))?;
    let image = resolve_image(&args.image)?;
    let net = net_config(&args)?;
    let bytes = read_image(&image)?;
    let name = args.image.file_stem().map_or("guest".into(), |s| s.to_string_lossy().into_owned());
    let mut guest_args = vec![name];
    guest_args.extend(args.guest_args.iter().cloned());
    let config = VmConfig {
        mem_size,
        timeout,
        args: guest_args,
        env: args.env.clone(),
        net,
        sandbox: !args.no_sandbox,
        sandbox_selftest: args.sandbox_selftest,
        console_limit: args.console_limit,
        console_rate: args.console_rate.filter(|r| *r > 0),
        snapshot_out: args.snapshot_out.clone(),
        volume: args.volume.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?,
    };
    if let Some(seconds) = args.cpu_limit {
        anyhow::ensure!(seconds > 0, "--cpu-limit must be at least 1 second");
        mayfly_monitor::sys::limit_cpu(seconds).context("cannot set the CPU-time limit")?;
    }
    let mut instance = match &args.from_snapshot {
        Some(template) => {
            if !args.env.is_empty() || !args.guest_args.is_empty() {
                bail!(
                    "--from-snapshot: a clone keeps the snapshot's arguments and environment; \
                     pass them when making it (--snapshot-out)"
                );
            }
            Instance::resume(&bytes, template, &config).with_context(|| {
                format!("cannot clone {} from {}", image.display(), template.display())
            })?
        }
        None => Instance::prepare(&bytes, &config)
            .with_context(|| format!("cannot boot {}", image.display()))?,
    };
    if let Some(nic) = instance.nic() {
        for (addr, publish) in nic.published.iter().zip(&args.publish) {
            let line =
                MonitorLine::Publishing { addr: addr.to_string(), guest_port: publish.guest_port };
            eprintln!("{line}");
        }
        if let Some(tap) = &nic.tap_name {
            eprintln!("{}", MonitorLine::TapAttached { tap: tap.clone() });
        }
    }
    // Opened now: the sandboxed run loop may not open files, but may read this one.
    let status_file =
        if args.timings { std::fs::File::open("/proc/self/status").ok() } else { None };
    if args.standby {
        // Sandboxed before standing by: the filter's cost is off the cold-start path.
        instance.enter_sandbox()?;
        eprintln!("{}", MonitorLine::Standby);
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line)? == 0 || !standby::is_go(&line) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let report = instance.run(&mut std::io::stdout().lock())?;
    if args.timings {
        let t = report.timings;
        eprintln!(
            "mayfly-timings: start_ns={start_ns} entered_ns={} first_hypercall_ns={} stopped_ns={} \
             peak_rss_kib={}",
            t.entered_ns,
            t.first_hypercall_ns.unwrap_or(0),
            t.stopped_ns,
            status_file.and_then(peak_rss_kib).unwrap_or(0)
        );
    }
    let dropped = report.dropped_frames;
    if dropped != Default::default() {
        eprintln!(
            "mayfly: tap: dropped {} oversized frames from the host and {} frames from the guest \
             with a source address not its own",
            dropped.oversized, dropped.spoofed
        );
    }
    if let Some(diagnosis) = report.outcome.diagnosis() {
        eprintln!("mayfly: {diagnosis}");
    }
    if let Some(path) = &report.snapshot {
        eprintln!("mayfly: snapshot written to {}", path.display());
    } else if let Some(path) = &args.snapshot_out {
        bail!(
            "the guest stopped before its first wait for I/O, so no snapshot was written to {}; \
             snapshot a program that waits (a service, or one calling mayfly::wait)",
            path.display()
        );
    }
    Ok(ExitCode::from(report.outcome.exit_status()))
}

/// The image to use: `path` itself, or the image built from it when it is a guest crate's directory.
pub(super) fn resolve_image(path: &std::path::Path) -> Result<PathBuf> {
    if !path.join("Cargo.toml").is_file() {
        return Ok(path.to_owned());
    }
    let built = mayfly_cli::builder::build(&mayfly_cli::builder::BuildRequest {
        crate_dir: path.to_owned(),
        output: None,
        target_dir: None,
        keep_symbols: false,
    })?;
    eprintln!("mayfly: built {} ({} bytes)", built.path.display(), built.size);
    Ok(built.path)
}

/// This process's peak resident set size (`VmHWM`: of this program's memory only, unlike
/// `ru_maxrss`, which also counts the parent's pages shared before `exec`), from its
/// `/proc/self/status`, opened before the sandbox and read with plain reads only.
fn peak_rss_kib(mut file: std::fs::File) -> Option<u64> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(chunk.get(..n)?),
        }
    }
    let status = String::from_utf8_lossy(&bytes);
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn read_image(path: &std::path::Path) -> Result<Vec<u8>> {
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

#[cfg(test)]
#[path = "run_standby_tests.rs"]
mod standby_tests;
