//! The standby protocol between a monitor (`mayfly run --standby`) and the gateway that starts
//! it (`mayfly serve`), written once for both sides:
//!
//! 1. the gateway spawns `mayfly run` with the flags of [`MonitorArgs::to_args`];
//! 2. the monitor prepares the VM and prints, on stderr, [`MonitorLine::Publishing`] (or
//!    [`MonitorLine::TapAttached`]), then [`MonitorLine::Standby`]; any other line is a
//!    diagnosis (the gateway logs it and keeps the last one);
//! 3. the gateway writes [`GO`] (a line on stdin) to enter the guest; end of input instead makes
//!    the monitor exit without running it.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The command that enters the guest, as the gateway writes it (one line on stdin).
pub const GO: &[u8] = b"go\n";

/// Whether `line` (read from stdin by the monitor) is the [`GO`] command.
pub fn is_go(line: &str) -> bool {
    line.trim().as_bytes() == GO.trim_ascii()
}

/// A line of the monitor's stderr that the gateway acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorLine {
    /// A guest port is reachable at `addr` (as given to `--publish`, with the port chosen).
    Publishing {
        /// Where the host side listens (e.g. `127.0.0.1:41234`).
        addr: String,
        /// The guest's port.
        guest_port: u16,
    },
    /// The guest is attached to tap device `tap` (its address is the one given with `--ip`).
    TapAttached {
        /// The tap device.
        tap: String,
    },
    /// Everything is prepared; the monitor waits for [`GO`].
    Standby,
}

const PUBLISHING: &str = "mayfly: publishing ";
const TO_GUEST_PORT: &str = " -> guest port ";
const TAP_ATTACHED: &str = "mayfly: guest attached to tap ";
const STANDBY: &str = "mayfly: standby";

impl fmt::Display for MonitorLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorLine::Publishing { addr, guest_port } => {
                write!(f, "{PUBLISHING}{addr}{TO_GUEST_PORT}{guest_port}")
            }
            MonitorLine::TapAttached { tap } => write!(f, "{TAP_ATTACHED}{tap}"),
            MonitorLine::Standby => f.write_str(STANDBY),
        }
    }
}

impl MonitorLine {
    /// The protocol line `line` is, or `None` for any other line (a diagnosis).
    pub fn parse(line: &str) -> Option<MonitorLine> {
        if line == STANDBY {
            return Some(MonitorLine::Standby);
        }
        if let Some(tap) = line.strip_prefix(TAP_ATTACHED) {
            return Some(MonitorLine::TapAttached { tap: tap.to_owned() });
        }
        let rest = line.strip_prefix(PUBLISHING)?;
        let (addr, port) = rest.rsplit_once(TO_GUEST_PORT)?;
        Some(MonitorLine::Publishing { addr: addr.to_owned(), guest_port: port.parse().ok()? })
    }
}

/// How a monitor's guest is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorNet {
    /// User-mode networking: `--publish BIND:GUEST_PORT`, e.g. bind `127.0.0.1:0` (a free port).
    Publish {
        /// The host side, `ADDR:PORT` as `--publish` takes it before the guest port.
        bind: String,
        /// The guest's port.
        guest_port: u16,
    },
    /// A tap device: `--net tap=NAME --ip ADDR/PREFIX [--gateway ADDR]`.
    Tap {
        /// The tap device.
        name: String,
        /// The guest's address and prefix, e.g. `10.0.0.2/24`.
        ip: String,
        /// The guest's default gateway.
        gateway: Option<std::net::Ipv4Addr>,
    },
}

/// The `mayfly run` flags a gateway starts a standby monitor with (`--standby` is always given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorArgs {
    /// The image.
    pub image: PathBuf,
    /// How the guest is reached.
    pub net: MonitorNet,
    /// Guest memory, MiB (`--mem`).
    pub mem_mib: u64,
    /// CPU-time limit, seconds (`--cpu-limit`; `None`: no limit).
    pub cpu_limit_s: Option<u64>,
    /// Console output allowed, bytes (`--console-limit`).
    pub console_limit_bytes: Option<u64>,
    /// Console output shown per second, bytes (`--console-rate`).
    pub console_rate: Option<u64>,
    /// Connections carried at once (`--max-connections`, user-mode networking only).
    pub max_connections: Option<u64>,
    /// Host ports on 127.0.0.1 the guest may connect out to at 10.0.2.2
    /// (`--allow-host-port`, user-mode networking only).
    pub allow_host_ports: Vec<u16>,
    /// Guest environment (`--env K=V`).
    pub env: Vec<(String, String)>,
    /// Guest arguments (after `--`).
    pub args: Vec<String>,
    /// Resume a clone of this snapshot instead of booting (`--from-snapshot`); the clone keeps
    /// the snapshot's environment and arguments, so `env` and `args` are not passed.
    pub from_snapshot: Option<PathBuf>,
    /// The volume (`--volume FILE[:ro|:size=N]`), if any.
    pub volume: Option<String>,
}

impl MonitorArgs {
    /// The arguments after the `mayfly` binary: `run IMAGE ... --standby ... -- ARGS`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["run".into(), self.image.clone().into()];
        let mut flag = |name: &str, value: String| {
            out.push(name.into());
            out.push(value.into());
        };
        match &self.net {
            MonitorNet::Publish { bind, guest_port } => {
                flag("--publish", format!("{bind}:{guest_port}"));
            }
            MonitorNet::Tap { name, ip, gateway } => {
                flag("--net", format!("tap={name}"));
                flag("--ip", ip.clone());
                if let Some(gateway) = gateway {
                    flag("--gateway", gateway.to_string());
                }
            }
        }
        if let Some(seconds) = self.cpu_limit_s {
            flag("--cpu-limit", seconds.to_string());
        }
        if let Some(bytes) = self.console_limit_bytes {
            flag("--console-limit", bytes.to_string());
        }
        if let Some(rate) = self.console_rate {
            flag("--console-rate", rate.to_string());
        }
        if let (Some(n), MonitorNet::Publish { .. }) = (self.max_connections, &self.net) {
            flag("--max-connections", n.to_string());
        }
        if let MonitorNet::Publish { .. } = &self.net {
            for port in &self.allow_host_ports {
                flag("--allow-host-port", port.to_string());
            }
        }
        flag("--mem", self.mem_mib.to_string());
        if let Some(volume) = &self.volume {
            flag("--volume", volume.clone());
        }
        if let Some(snapshot) = &self.from_snapshot {
            out.push("--from-snapshot".into());
            out.push(snapshot.clone().into());
            out.push("--standby".into());
            return out;
        }
        for (k, v) in &self.env {
            flag("--env", format!("{k}={v}"));
        }
        out.push("--standby".into());
        out.push("--".into());
        out.extend(self.args.iter().map(OsString::from));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_round_trip() {
        let lines = [
            MonitorLine::Publishing { addr: "127.0.0.1:41234".into(), guest_port: 80 },
            MonitorLine::Publishing { addr: "unix:/run/a b/x.sock".into(), guest_port: 8080 },
            MonitorLine::TapAttached { tap: "mftap0".into() },
            MonitorLine::Standby,
        ];
        for line in lines {
            assert_eq!(MonitorLine::parse(&line.to_string()), Some(line.clone()), "{line}");
        }
    }

    #[test]
    fn the_wire_text_is_what_older_peers_print() {
        let line = MonitorLine::Publishing { addr: "127.0.0.1:5".into(), guest_port: 80 };
        assert_eq!(line.to_string(), "mayfly: publishing 127.0.0.1:5 -> guest port 80");
        assert_eq!(MonitorLine::Standby.to_string(), "mayfly: standby");
        assert_eq!(MonitorLine::parse("mayfly: guest exited with status 3"), None);
        assert_eq!(MonitorLine::parse("mayfly: publishing x -> guest port 99999"), None);
    }

    #[test]
    fn go_is_one_line() {
        assert!(is_go(std::str::from_utf8(GO).unwrap()));
        assert!(is_go("go\r\n"));
        assert!(!is_go("") && !is_go("gone\n"));
    }

    #[test]
    fn standby_and_the_guest_arguments_come_last() {
        let args = MonitorArgs {
            image: "/i.img".into(),
            net: MonitorNet::Tap { name: "t0".into(), ip: "10.0.0.2/24".into(), gateway: None },
            mem_mib: 32,
            cpu_limit_s: None,
            console_limit_bytes: None,
            console_rate: None,
            max_connections: Some(5),
            allow_host_ports: vec![],
            env: vec![],
            args: vec!["--mem".into()],
            from_snapshot: None,
            volume: None,
        };
        let text: Vec<String> =
            args.to_args().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            text,
            ["run", "/i.img", "--net", "tap=t0", "--ip", "10.0.0.2/24", "--mem", "32"]
                .into_iter()
                .chain(["--standby", "--", "--mem"])
                .collect::<Vec<_>>()
        );
    }
}
