//! The standby contract, from the monitor's side: the flags a gateway passes
//! ([`MonitorArgs::to_args`]) parse as `mayfly run` arguments meaning what the gateway meant.

use super::Args;
use clap::Parser;
use mayfly_protocol::standby::{MonitorArgs, MonitorNet};

#[derive(Parser)]
struct Run {
    #[command(flatten)]
    args: Args,
}

fn parse(monitor: &MonitorArgs) -> Args {
    // The first argument, `run`, stands where clap expects the program's name.
    match Run::try_parse_from(monitor.to_args()) {
        Ok(run) => run.args,
        Err(e) => panic!("{:?} do not parse: {e}", monitor.to_args()),
    }
}

fn published() -> MonitorArgs {
    MonitorArgs {
        image: "/images/hello.img".into(),
        net: MonitorNet::Publish {
            bind: "unix:/run/mayfly-serve/i7.sock".into(),
            guest_port: 8080,
        },
        mem_mib: 48,
        cpu_limit_s: Some(7),
        console_limit_bytes: Some(4096),
        console_rate: Some(100),
        max_connections: Some(9),
        allow_host_ports: vec![5432, 6379],
        env: vec![("A".into(), "b=c".into()), ("EMPTY".into(), String::new())],
        args: vec!["--mem".into(), "x y".into()],
        from_snapshot: None,
        volume: Some("/state/volumes/kv.img:size=64M".into()),
    }
}

#[test]
fn published_monitor_flags_mean_what_the_gateway_meant() {
    let args = parse(&published());
    assert_eq!(args.image, std::path::Path::new("/images/hello.img"));
    assert!(args.standby);
    assert_eq!(args.mem, Some(48));
    assert_eq!(args.publish.len(), 1);
    assert_eq!(
        args.publish[0].host,
        mayfly_monitor::net::HostAddr::Unix("/run/mayfly-serve/i7.sock".into())
    );
    assert_eq!(args.publish[0].guest_port, 8080);
    assert_eq!(
        (args.cpu_limit, args.console_limit, args.console_rate),
        (Some(7), Some(4096), Some(100))
    );
    assert_eq!(args.max_connections, 9);
    assert_eq!(args.allow_host_port, [5432, 6379]);
    assert_eq!(args.env, published().env);
    assert_eq!(args.guest_args, ["--mem", "x y"]);
    assert!(args.net.is_none());
    assert_eq!(args.volume.as_deref(), Some("/state/volumes/kv.img:size=64M"));
}

#[test]
fn a_loopback_tcp_publish_means_what_the_gateway_meant() {
    let monitor = MonitorArgs {
        net: MonitorNet::Publish { bind: "127.0.0.1:0".into(), guest_port: 80 },
        ..published()
    };
    let args = parse(&monitor);
    assert_eq!(
        args.publish[0].host,
        mayfly_monitor::net::HostAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
    );
    assert_eq!(args.publish[0].guest_port, 80);
}

#[test]
fn tap_monitor_flags_mean_what_the_gateway_meant() {
    let monitor = MonitorArgs {
        net: MonitorNet::Tap {
            name: "mftap3".into(),
            ip: "10.0.0.2/24".into(),
            gateway: Some([10, 0, 0, 1].into()),
        },
        cpu_limit_s: None,
        console_limit_bytes: None,
        console_rate: None,
        args: vec![],
        ..published()
    };
    let args = parse(&monitor);
    assert_eq!(args.net.and_then(|t| t.0).as_deref(), Some("mftap3"));
    assert_eq!(args.ip, Some(([10, 0, 0, 2], 24)));
    assert_eq!(args.gateway, Some([10, 0, 0, 1].into()));
    assert!(args.publish.is_empty() && args.guest_args.is_empty());
    assert_eq!((args.cpu_limit, args.console_limit, args.console_rate), (None, None, None));
    // --max-connections is for user-mode networking: not passed with a tap.
    assert_eq!(args.max_connections, mayfly_monitor::net::usernet::MAX_CONNECTIONS);
    // So is --allow-host-port (`mayfly run` refuses it with --net tap).
    assert!(args.allow_host_port.is_empty());
}

#[test]
fn a_clone_launch_means_what_the_gateway_meant() {
    let monitor = MonitorArgs {
        from_snapshot: Some("/run/mayfly-serve/s.snap".into()),
        volume: None,
        ..published()
    };
    let args = parse(&monitor);
    assert_eq!(
        args.from_snapshot.as_deref(),
        Some(std::path::Path::new("/run/mayfly-serve/s.snap"))
    );
    assert!(args.standby);
    // A clone keeps the snapshot's environment and arguments: none are passed.
    assert!(args.env.is_empty() && args.guest_args.is_empty());
    assert_eq!(args.publish[0].guest_port, 8080);
    assert_eq!(args.max_connections, 9);
}
