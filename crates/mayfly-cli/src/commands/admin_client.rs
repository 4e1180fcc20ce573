//! `mayfly ps`, `mayfly deploy`, `mayfly rm`, `mayfly logs`: clients of the admin API.

use anyhow::{Context, Result, bail};
use mayfly_serve::config::Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the admin API is and how to authenticate.
#[derive(clap::Args)]
pub struct Admin {
    /// The admin API's address (default: $MAYFLY_ADMIN, else 127.0.0.1:8081).
    #[arg(long, global = true)]
    admin: Option<SocketAddr>,
    /// The admin token (default: $MAYFLY_ADMIN_TOKEN, else the file `mayfly serve` wrote).
    #[arg(long, global = true)]
    token: Option<String>,
}

impl Admin {
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<serde_json::Value> {
        let addr = match self.admin {
            Some(addr) => addr,
            None => std::env::var("MAYFLY_ADMIN")
                .ok()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
        };
        let token = match &self.token {
            Some(t) => t.clone(),
            None => match std::env::var("MAYFLY_ADMIN_TOKEN") {
                Ok(t) => t,
                Err(_) => {
                    let path = mayfly_serve::state_dir().join("admin-token");
                    std::fs::read_to_string(&path).with_context(|| {
                        format!(
                            "no admin token: cannot read {} (is `mayfly serve` running?)",
                            path.display()
                        )
                    })?
                }
            },
        };
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).with_context(|| {
                format!("cannot reach the admin API at {addr}: is `mayfly serve` running?")
            })?;
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            token.trim(),
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").context("malformed admin response")?;
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let value: serde_json::Value =
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        if status != 200 {
            let message = value.get("error").and_then(|e| e.as_str()).unwrap_or(body.trim());
            bail!("{message}");
        }
        Ok(value)
    }
}

/// List services and instances.
#[derive(clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    admin: Admin,
}

pub fn ps(args: PsArgs) -> Result<ExitCode> {
    let services = args.admin.request("GET", "/services", b"")?;
    let instances = args.admin.request("GET", "/instances", b"")?;
    println!(
        "{:<16} {:<8} {:>5} {:>8} {:>8} {:>8} {:>7}",
        "SERVICE", "MODE", "READY", "STARTING", "STANDBY", "QUEUED", "COLD"
    );
    for s in services.as_array().into_iter().flatten() {
        let count = |state: &str| s["instances"][state].as_u64().unwrap_or(0);
        println!(
            "{:<16} {:<8} {:>5} {:>8} {:>8} {:>8} {:>7}{}",
            s["spec"]["name"].as_str().unwrap_or("?"),
            s["spec"]["mode"].as_str().unwrap_or("?"),
            count("ready") + count("draining"),
            count("starting"),
            count("standby"),
            s["queued"].as_u64().unwrap_or(0),
            s["cold_starts"].as_u64().unwrap_or(0),
            match s["last_crash"].as_str() {
                Some(crash) => format!("  last crash: {crash}"),
                None => String::new(),
            }
        );
    }
    println!();
    println!(
        "{:<22} {:<9} {:>9} {:>9} {:>10}  ADDRESS",
        "INSTANCE", "STATE", "AGE", "REQUESTS", "MEMORY"
    );
    for i in instances.as_array().into_iter().flatten() {
        println!(
            "{:<22} {:<9} {:>8.1}s {:>9} {:>7} KiB  {}",
            i["name"].as_str().unwrap_or("?"),
            i["state"].as_str().unwrap_or("?"),
            i["age_seconds"].as_f64().unwrap_or(0.0),
            i["requests"].as_u64().unwrap_or(0),
            i["memory_kib"].as_u64().map_or("?".into(), |m| m.to_string()),
            i["addr"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Deploy (or update) the services of a TOML file.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// A TOML file with `[[service]]` tables (the same format as `mayfly serve --config`).
    file: PathBuf,
    #[command(flatten)]
    admin: Admin,
}

pub fn deploy(args: DeployArgs) -> Result<ExitCode> {
    let config = Config::load(&args.file)?;
    if config.services.is_empty() {
        bail!("{} has no [[service]] table", args.file.display());
    }
    for mut spec in config.services {
        // Relative paths are relative to the file, not to the gateway's directory.
        let base = args.file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
        let base =
            std::fs::canonicalize(if base.as_os_str().is_empty() { ".".into() } else { base })?;
        spec.image = spec.image.map(|p| base.join(p));
        spec.guest_crate = spec.guest_crate.map(|p| base.join(p));
        let body = serde_json::to_vec(&spec)?;
        args.admin.request("PUT", &format!("/services/{}", spec.name), &body)?;
        println!("deployed {}", spec.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Remove a service (its instances finish their requests, then go).
#[derive(clap::Args)]
pub struct RmArgs {
    /// The service.
    service: String,
    #[command(flatten)]
    admin: Admin,
}

pub fn rm(args: RmArgs) -> Result<ExitCode> {
    args.admin.request("DELETE", &format!("/services/{}", args.service), b"")?;
    println!("removed {}", args.service);
    Ok(ExitCode::SUCCESS)
}

/// Print a service's console output (every instance's, tagged with its name).
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The service.
    service: String,
    /// How many lines.
    #[arg(long, short = 'n', default_value_t = 200)]
    lines: usize,
    #[command(flatten)]
    admin: Admin,
}

pub fn logs(args: LogsArgs) -> Result<ExitCode> {
    let lines = args.admin.request(
        "GET",
        &format!("/services/{}/logs?lines={}", args.service, args.lines),
        b"",
    )?;
    for line in lines.as_array().into_iter().flatten() {
        println!("{}", line.as_str().unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}
