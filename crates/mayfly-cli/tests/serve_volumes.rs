//! `mayfly serve` with volumes: kv keeps its data across scale-to-zero and a gateway restart,
//! and a writable volume is refused with more than one instance.

mod common;

use common::gateway::*;
use common::*;
use std::path::Path;
use std::time::Duration;

fn kv_with_volume(extra: &str) -> String {
    service(
        "kv",
        KV,
        &format!(
            "path_prefix = \"/kv\"\nidle_timeout_ms = 200\nwarm_shells = 0\nmax_instances = 1\n\
             volume = {{ path = \"kv.img\", size_mib = 8 }}\n{extra}"
        ),
    )
}

/// Starts a gateway on the configuration already in `dir` (its state directory too).
fn start_in(dir: &Path) -> Gateway {
    require_kvm();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(dir.join("serve.toml")).env("MAYFLY_STATE_DIR", dir);
    let Started { child, pid, addr, admin, log } = start_serve(cmd);
    Gateway { child, pid, addr, admin, dir: dir.to_path_buf(), log, exited: None }
}

#[test]
fn kv_keeps_its_data_across_scale_to_zero_and_a_gateway_restart() {
    let mut gw = Gateway::start("volume-kv", &kv_with_volume(""));
    let put = gw.request("PUT", "/kv/paint", &[], br#""blue""#);
    assert_eq!(put.status, 201, "{put:?}");
    gw.wait_until("kv scaled to zero", Duration::from_secs(10), || gw.instances("kv").is_empty());
    let get = gw.get("/kv/paint");
    assert_eq!((get.status, get.body.as_slice()), (200, &br#""blue""#[..]), "{get:?}");
    assert!(gw.dir.join("volumes/kv.img").is_file(), "the volume lives in the state directory");
    assert_eq!(gw.service("kv")["cold_starts"], 2, "the value came back from a new instance");
    let del = gw.request("DELETE", "/kv/paint", &[], b"");
    assert_eq!(del.status, 204, "{del:?}");
    let put = gw.request("PUT", "/kv/shape", &[], br#""round""#);
    assert_eq!(put.status, 201, "{put:?}");
    // A redeploy while the instance runs: the new version's instance starts only once the old
    // monitor is gone (else its monitor would find the volume locked and the request fail).
    for round in 0..3 {
        let spec = gw.service("kv")["spec"].to_string();
        let reply = admin_request(gw.admin, "PUT", "/services/kv", Some(TOKEN), spec.as_bytes());
        assert!(reply.status < 300, "redeploy {round}: {reply:?}");
        let get = gw.get("/kv/shape");
        assert_eq!((get.status, get.body.as_slice()), (200, &br#""round""#[..]), "{get:?}");
    }
    // An API deploy may not point a volume outside the gateway's volume directory.
    let mut spec = gw.service("kv")["spec"].clone();
    spec["volume"]["path"] = "/etc/passwd".into();
    let reply =
        admin_request(gw.admin, "PUT", "/services/kv", Some(TOKEN), spec.to_string().as_bytes());
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(String::from_utf8_lossy(&reply.body).contains("volume directory"), "{reply:?}");

    assert_eq!(gw.terminate(Duration::from_secs(20)), Some(0), "{}", gw.stderr());
    let dir = gw.dir.clone();
    drop(gw);
    let gw = start_in(&dir);
    let get = gw.get("/kv/shape");
    assert_eq!((get.status, get.body.as_slice()), (200, &br#""round""#[..]), "{get:?}");
    let gone = gw.get("/kv/paint");
    assert_eq!(gone.status, 404, "a delete is durable too: {gone:?}");
}

#[test]
fn a_writable_volume_with_more_than_one_instance_is_refused() {
    require_kvm();
    let dir = scratch("volume-refused");
    let path = dir.join("serve.toml");
    let services = service(
        "kv",
        KV,
        "path_prefix = \"/kv\"\nmax_instances = 2\nwarm_shells = 0\nvolume = { path = \"kv.img\" }",
    );
    std::fs::write(&path, config(&services)).unwrap();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(&path).env("MAYFLY_STATE_DIR", &dir);
    let run = run_bounded(cmd, Duration::from_secs(30));
    assert_eq!(run.status, Some(EXIT_MAYFLY_ERROR), "{}", run.stderr);
    assert!(
        run.stderr.contains("is writable, so it has one writer: set max_instances = 1"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_instance_waits_for_a_volume_still_held_by_a_stale_monitor() {
    let gw = Gateway::start("volume-stale", &kv_with_volume(""));
    // A process this gateway never started holds the volume (like a monitor of a gateway killed
    // just before this one started) and lets it go a little later.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(gw.dir.join("volumes/kv.img"))
        .unwrap();
    file.set_len(8 << 20).unwrap();
    // SAFETY: flock(2) on a descriptor we own.
    let locked = unsafe {
        libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB)
    };
    assert_eq!(locked, 0, "cannot lock the volume");
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(file);
    });
    let asked = std::time::Instant::now();
    let put = gw.request("PUT", "/kv/late", &[], br#""still""#);
    eprintln!("answered after {:?}", asked.elapsed());
    assert_eq!(put.status, 201, "the start waited for the volume: {put:?}");
    holder.join().unwrap();
}
