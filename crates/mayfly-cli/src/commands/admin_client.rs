//! `mayfly ps`, `mayfly deploy`, `mayfly rm`, `mayfly logs`: clients of the admin API.

use anyhow::{Context, Result, bail};
use mayfly_protocol::admin::{self, InstanceInfo, ServiceInfo};
use mayfly_protocol::http;
use std::net::SocketAddr;
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
    /// `method path` with `body` (JSON) on the admin API: the JSON answer, or its error message.
    fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<T> {
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
                    let path = admin::token_path();
                    std::fs::read_to_string(&path).with_context(|| {
                        format!(
                            "no admin token: cannot read {} (is `mayfly serve` running?)",
                            path.display()
                        )
                    })?
                }
            },
        };
        let auth = format!("Bearer {}", token.trim());
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let timeouts = (Duration::from_secs(3), Duration::from_secs(600));
        let reply =
            http::request(addr, (method, path), &headers, body, timeouts).with_context(|| {
                format!("cannot reach the admin API at {addr}: is `mayfly serve` running?")
            })?;
        if reply.status != 200 {
            let text = String::from_utf8_lossy(&reply.body);
            match serde_json::from_slice::<admin::ErrorBody>(&reply.body) {
                Ok(error) => bail!("{}", error.error),
                Err(_) => bail!("the admin API answered {}: {}", reply.status, text.trim()),
            }
        }
        serde_json::from_slice(&reply.body)
            .context("the admin API's answer is not the JSON expected")
    }
}

/// List services and instances.
#[derive(clap::Args)]
pub struct PsArgs {
    #[command(flatten)]
    admin: Admin,
}

pub fn ps(args: PsArgs) -> Result<ExitCode> {
    let services: Vec<ServiceInfo> = args.admin.request("GET", "/services", b"")?;
    let instances: Vec<InstanceInfo> = args.admin.request("GET", "/instances", b"")?;
    println!(
        "{:<16} {:<8} {:>5} {:>8} {:>8} {:>8} {:>7}",
        "SERVICE", "MODE", "READY", "STARTING", "STANDBY", "QUEUED", "COLD"
    );
    for s in &services {
        let count = |state: &str| s.instances.get(state).copied().unwrap_or(0);
        println!(
            "{:<16} {:<8} {:>5} {:>8} {:>8} {:>8} {:>7}{}",
            s.spec.name,
            s.spec.mode,
            count("ready") + count("draining"),
            count("starting"),
            count("standby"),
            s.queued,
            s.cold_starts,
            match &s.last_crash {
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
    for i in &instances {
        println!(
            "{:<22} {:<9} {:>8.1}s {:>9} {:>7} KiB  {}",
            i.name,
            i.state,
            i.age_seconds,
            i.requests,
            i.memory_kib.map_or("?".into(), |m| m.to_string()),
            i.addr,
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
    let file = &args.file;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{}: {}", file.display(), e.to_string().replace('\n', " ").trim())
    })?;
    let services = match table.get("service") {
        Some(toml::Value::Array(services)) if !services.is_empty() => services,
        _ => bail!("{} has no [[service]] table", file.display()),
    };
    // Relative paths are relative to the file, not to the gateway's directory.
    let base = file.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let base = std::fs::canonicalize(if base.as_os_str().is_empty() { ".".into() } else { base })?;
    // The gateway validates each spec and names what it refuses.
    for spec in services {
        let mut spec = serde_json::to_value(spec)?;
        let name = spec["name"].as_str().map(str::to_owned);
        let name = name.with_context(|| format!("{}: a service has no name", file.display()))?;
        for key in ["image", "crate"] {
            if let Some(path) = spec[key].as_str() {
                spec[key] = base.join(path).to_string_lossy().into_owned().into();
            }
        }
        let body = serde_json::to_vec(&spec)?;
        let _: serde_json::Value =
            args.admin.request("PUT", &format!("/services/{name}"), &body)?;
        println!("deployed {name}");
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
    let _: serde_json::Value =
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
    let lines: Vec<String> = args.admin.request(
        "GET",
        &format!("/services/{}/logs?lines={}", args.service, args.lines),
        b"",
    )?;
    for line in lines {
        println!("{}", escape_controls(&line));
    }
    Ok(ExitCode::SUCCESS)
}

/// `line` with its control characters (but tabs) written as escapes (`\x1b`), so that a
/// guest's output cannot move the cursor, retitle or clear the terminal reading `mayfly logs`.
fn escape_controls(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '\t' => out.push(c),
            // Control characters (category Cc) are all below U+00A0.
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("a\x1b[2Jb\x07\r\tc\u{9b}d"), "a\\x1b[2Jb\\x07\\x0d\tc\\x9bd");
        assert_eq!(escape_controls("plain: ünïcode ✓"), "plain: ünïcode ✓");
    }
}
