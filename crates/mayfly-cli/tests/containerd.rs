//! Mayfly under containerd: `mayfly image` makes an OCI image that a private containerd 1.6
//! imports, and `ctr run --runtime io.containerd.mayfly.v2` runs it through
//! containerd-shim-mayfly-v2: the console reaches ctr, the guest's exit status is ctr's, `ctr task
//! kill` stops an idle guest (137), and nothing is left after. These tests FAIL, saying why, when
//! containerd or ctr is missing (apt-get install containerd runc).

mod common;
#[path = "common/containerd.rs"]
mod private_containerd;

use private_containerd::{Containerd, RUNTIME};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Packs the guest crate at `rel` as an OCI image named `reference` with `cmd` as its Cmd,
/// and imports it into `containerd`.
fn import(containerd: &Containerd, rel: &str, reference: &str, cmd: &[&str]) {
    let image = common::guest_image(rel);
    let tar = containerd.dir.join("image.tar");
    let out = common::mayfly()
        .arg("image")
        .arg(&image)
        .arg("-o")
        .arg(&tar)
        .args(["--name", reference, "--mem", "16", "--env", "GREETING=hi", "--"])
        .args(cmd)
        .output()
        .unwrap();
    assert!(out.status.success(), "mayfly image failed: {}", String::from_utf8_lossy(&out.stderr));
    // skopeo (containers/image, as registries' tooling) reads it as an OCI archive too.
    private_containerd::require_program("skopeo");
    let inspect = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", tar.display()))
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    assert!(json.contains(r#""io.mayfly.memory-mib": "16""#), "{json}");
    assert!(json.contains(r#""GREETING=hi""#), "{json}");
    let imported = containerd.ctr_ok(&["images", "import", tar.to_str().unwrap()]);
    assert!(imported.contains(reference), "ctr images import: {imported}");
}

/// Waits (at most 20 s) for `ctr run` to return; its exit code.
fn exit_code(containerd: &Containerd, ctr: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = ctr.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = ctr.kill();
            panic!("ctr run did not return within 20 s:\n{}", containerd.log());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctr_run_prints_the_console_and_returns_the_guest_status() {
    let containerd = Containerd::start();
    import(&containerd, "examples/hello", "mayfly.local/hello:test", &["7"]);
    let run = |id: &str, args: &[&str]| {
        let mut cmd = containerd.ctr_command(&["run", "--rm", "--runtime", RUNTIME]);
        cmd.args(["mayfly.local/hello:test", id]).args(args);
        cmd.output().unwrap()
    };
    // The image's Cmd: its first argument is hello's exit status.
    let out = run("hello-1", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Hello from a Mayfly unikernel!"), "{stdout}\n{out:?}");
    assert!(stdout.contains(r#"args: ["image", "7"]"#), "{stdout}");
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    // ctr's arguments replace the whole command (entrypoint included), as for any container.
    let out = run("hello-2", &["/mayfly/image", "0", "more"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"args: ["image", "0", "more"]"#));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Another program than the unikernel: refused, saying why.
    let out = run("hello-3", &["/bin/sh"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a Mayfly image"), "{stderr}");
    assert_ne!(out.status.code(), Some(0));
    containerd.assert_nothing_left(&["hello-1", "hello-2", "hello-3"]);
}

#[test]
fn ctr_task_kill_stops_an_idle_guest_with_status_137() {
    let containerd = Containerd::start();
    import(
        &containerd,
        "tests/guests/probe",
        "mayfly.local/probe:test",
        &["announce-sleep", "600000"],
    );
    let mut cmd = containerd.ctr_command(&["run", "--rm", "--runtime", RUNTIME]);
    cmd.args(["mayfly.local/probe:test", "idle"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut ctr = cmd.spawn().unwrap();
    let stdout = BufReader::new(ctr.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "probe: running" => break,
            Ok(_) => {}
            Err(_) => {
                let _ = ctr.kill();
                panic!("the guest did not say `probe: running` in 30 s:\n{}", containerd.log());
            }
        }
    }
    let tasks = containerd.ctr_ok(&["tasks", "list"]);
    assert!(tasks.lines().any(|l| l.starts_with("idle") && l.contains("RUNNING")), "{tasks}");
    containerd.ctr_ok(&["tasks", "kill", "--signal", "SIGKILL", "idle"]);
    assert_eq!(exit_code(&containerd, &mut ctr), Some(137), "ctr run after SIGKILL");
    containerd.assert_nothing_left(&["idle"]);
}

#[test]
fn a_bad_image_argument_is_a_one_line_error() {
    let dir = std::env::temp_dir().join(format!("mayfly-image-bad-{}", std::process::id()));
    let out =
        common::mayfly().args(["image", "/nonexistent/hello", "-o"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read /nonexistent/hello"), "{stderr}");
    let image = common::guest_image("examples/hello");
    let out = common::mayfly()
        .arg("image")
        .arg(&image)
        .args(["-o", "/tmp/never.tar", "--name", "Hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a full image name"), "{stderr}");
    assert!(!std::path::Path::new("/tmp/never.tar").exists());
}

#[test]
fn a_pod_sandbox_container_is_held_without_a_vm() {
    let containerd = Containerd::start();
    import(&containerd, "examples/hello", "mayfly.local/hello:pod", &[]);
    // As CRI makes it: the sandbox annotation, and a command that is no unikernel (`/pause`).
    let mut cmd = containerd.ctr_command(&["run", "--rm", "--runtime", RUNTIME]);
    cmd.args(["--annotation", "io.kubernetes.cri.container-type=sandbox"]);
    cmd.args(["mayfly.local/hello:pod", "pod", "/pause"]);
    let mut ctr = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = containerd.ctr_ok(&["tasks", "list"]);
        if tasks.lines().any(|l| l.starts_with("pod ") && l.contains("RUNNING")) {
            break;
        }
        if let Some(status) = ctr.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut ctr.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("the sandbox container stopped ({status}): {stderr}");
        }
        assert!(Instant::now() < deadline, "the sandbox is not running after 20 s: {tasks}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = containerd.leftovers(&[]);
    let monitors: Vec<&String> = left.iter().filter(|l| l.contains("mayfly run ")).collect();
    assert!(monitors.is_empty(), "a monitor runs for the sandbox: {monitors:?}");
    containerd.ctr_ok(&["tasks", "kill", "--signal", "SIGKILL", "pod"]);
    assert_eq!(exit_code(&containerd, &mut ctr), Some(137), "ctr run after SIGKILL");
    containerd.assert_nothing_left(&["pod"]);
}

#[test]
fn a_crashing_guest_reports_its_diagnosis_on_stderr_and_status_101() {
    let containerd = Containerd::start();
    import(&containerd, "tests/guests/probe", "mayfly.local/probe:crash", &["panic"]);
    let mut cmd = containerd.ctr_command(&["run", "--rm", "--runtime", RUNTIME]);
    let out = cmd.args(["mayfly.local/probe:crash", "crash"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("mayfly: guest panicked: probe panicked on purpose: 42"), "{stderr}");
    // The standby protocol's own lines stay between the shim and its monitor.
    assert!(!stderr.contains("mayfly: standby"), "{stderr}");
    containerd.assert_nothing_left(&["crash"]);
}

#[test]
fn the_container_memory_limit_sizes_the_guest() {
    let containerd = Containerd::start();
    // The image asks for 16 MiB (see `import`): too small to allocate 32 MiB.
    import(&containerd, "tests/guests/probe", "mayfly.local/probe:mem", &["alloc", "32"]);
    let run = |id: &str, limit: Option<&str>| {
        let mut cmd = containerd.ctr_command(&["run", "--rm", "--runtime", RUNTIME]);
        if let Some(bytes) = limit {
            cmd.args(["--memory-limit", bytes]);
        }
        cmd.args(["mayfly.local/probe:mem", id]).output().unwrap()
    };
    let small = run("mem-image", None);
    assert_ne!(small.status.code(), Some(0), "32 MiB allocated in a 16 MiB guest?");
    let big = run("mem-limit", Some("67108864"));
    let stdout = String::from_utf8_lossy(&big.stdout);
    assert!(stdout.contains("alloc: 32 MiB allocated"), "{stdout}\n{big:?}");
    assert_eq!(big.status.code(), Some(0));
    containerd.assert_nothing_left(&["mem-image", "mem-limit"]);
}
