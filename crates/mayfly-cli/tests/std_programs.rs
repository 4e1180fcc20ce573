//! Ordinary std programs as unikernels: each test program is built natively with cargo and as
//! a Mayfly image with `mayfly build`, both are run, and their output and exit status compared.
//! The programs (examples/std-hello, tests/guests/std-probe) do not depend on `mayfly`.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

/// Runs the native program with `args` and the environment entries in `env`.
fn run_native(binary: &PathBuf, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(binary);
    cmd.args(args).env_remove("STD_HELLO_GREETING").env_remove("STD_HELLO_UNSET");
    // As in the guest, which sees only the environment `--env` gives it.
    cmd.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("run the native program").into()
}

/// Runs the image with `args` and the environment entries in `env` (10 s safety limit).
fn run_unikernel(rel: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    require_kvm();
    let image = guest_image(rel);
    let entries: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut options = vec!["--timeout", "10"];
    for entry in &entries {
        options.extend(["--env", entry.as_str()]);
    }
    run_image(&image, &options, args)
}

/// `thread 'main' (12345) panicked` → `thread 'main' (N) panicked` (the thread id is the OS's).
fn without_thread_ids(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("thread '") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        match after.find("' (").zip(after.find(") panicked")) {
            Some((open, close)) if open < close => {
                out.push_str(&after[..open + 3]);
                out.push('N');
                rest = &after[close..];
            }
            _ => {
                out.push_str(&after[..8]);
                rest = &after[8..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The console lines of the library OS itself (`mayfly: ...`), and the rest.
fn split_mayfly_lines(stdout: &str) -> (Vec<&str>, String) {
    let (ours, program): (Vec<&str>, Vec<&str>) =
        stdout.lines().partition(|l| l.starts_with("mayfly: "));
    (ours, program.iter().map(|l| format!("{l}\n")).collect())
}

#[test]
fn std_hello_prints_the_same_as_natively() {
    let native = run_native(
        &native_binary("examples/std-hello", "std-hello"),
        &["a", "b"],
        &[("STD_HELLO_GREETING", "hi")],
    );
    let unikernel =
        run_unikernel("examples/std-hello", &["a", "b"], &[("STD_HELLO_GREETING", "hi")]);
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains(r#"STD_HELLO_GREETING = Some("hi")"#), "{}", native.stdout);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, native.status, "unikernel stderr: {}", unikernel.stderr);
    assert!(unikernel.stderr.is_empty(), "a normal exit prints no diagnosis: {}", unikernel.stderr);
}

#[test]
fn std_hello_exits_with_the_status_of_process_exit() {
    let native = run_native(&native_binary("examples/std-hello", "std-hello"), &["status=3"], &[]);
    let unikernel = run_unikernel("examples/std-hello", &["status=3"], &[]);
    assert_eq!(native.status, Some(3));
    assert_eq!(unikernel.status, Some(3), "stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.stdout, native.stdout);
}

#[test]
fn std_panic_reports_its_message_and_location() {
    let native = run_native(&native_binary("examples/std-hello", "std-hello"), &["panic"], &[]);
    let unikernel = run_unikernel("examples/std-hello", &["panic"], &[]);
    assert_eq!(native.status, Some(101));
    assert_eq!(unikernel.status, Some(101), "stderr: {}", unikernel.stderr);
    // std's report goes to stderr natively; a unikernel has one console, after stdout.
    assert!(native.stderr.contains("panicked at src/main.rs:"), "{}", native.stderr);
    assert_eq!(
        without_thread_ids(&unikernel.stdout),
        without_thread_ids(&(native.stdout + &native.stderr))
    );
    // The monitor's one-line diagnosis carries the message and location too.
    let diagnosis = unikernel.stderr.trim_end();
    assert_eq!(diagnosis.lines().count(), 1, "{diagnosis}");
    assert!(diagnosis.starts_with("mayfly: guest panicked: thread 'main'"), "{diagnosis}");
    assert!(
        diagnosis.contains("panicked at src/main.rs:")
            && diagnosis.ends_with("index out of bounds: the len is 0 but the index is 3"),
        "{diagnosis}"
    );
}

#[test]
fn std_probe_thread_locals_errors_allocations_and_environment_match_native() {
    let native_probe = native_binary("tests/guests/std-probe", "std-probe");
    for mode in ["tls", "errors", "alloc", "environment"] {
        let native = run_native(&native_probe, &[mode], &[]);
        let unikernel = run_unikernel("tests/guests/std-probe", &[mode], &[]);
        assert_eq!(native.status, Some(0), "{mode}: native stderr: {}", native.stderr);
        assert_eq!(
            unikernel.stdout, native.stdout,
            "{mode}: unikernel stderr: {}",
            unikernel.stderr
        );
        assert_eq!(unikernel.status, Some(0), "{mode}: stderr: {}", unikernel.stderr);
    }
}

#[test]
fn unknown_system_call_fails_with_enosys_and_says_so_once() {
    let native =
        run_native(&native_binary("tests/guests/std-probe", "std-probe"), &["syscall"], &[]);
    let unikernel = run_unikernel("tests/guests/std-probe", &["syscall"], &[]);
    let (ours, program) = split_mayfly_lines(&unikernel.stdout);
    assert_eq!(program, native.stdout, "the program sees what Linux gives it (ENOSYS, twice)");
    assert_eq!(ours, ["mayfly: syscall 4000 is not available in a unikernel (ENOSYS)"]);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);
}

#[test]
fn fork_fails_with_enosys_and_says_so_once() {
    let unikernel = run_unikernel("tests/guests/std-probe", &["unavailable"], &[]);
    let expected = "mayfly: fork is not available in a unikernel (ENOSYS)\n\
                    fork: -1, Function not implemented (os error 38)\n\
                    fork: -1, Function not implemented (os error 38)\n";
    assert_eq!(unikernel.stdout, expected, "stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0));
}

#[test]
fn abort_stops_the_guest_as_a_crash() {
    let unikernel = run_unikernel("tests/guests/std-probe", &["abort"], &[]);
    assert_eq!(unikernel.stdout, "aborting\n");
    assert_eq!(unikernel.status, Some(101), "stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.stderr.trim_end(), "mayfly: guest panicked: abort() called");
}

#[test]
fn std_threads_and_sync_match_native() {
    let native =
        run_native(&native_binary("tests/guests/std-probe", "std-probe"), &["threads"], &[]);
    let unikernel = run_unikernel("tests/guests/std-probe", &["threads"], &[]);
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains("mutex counter: 8000"), "{}", native.stdout);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);
}

#[test]
fn spawning_a_process_fails_with_enosys_and_says_so_once() {
    let unikernel = run_unikernel("tests/guests/std-probe", &["spawn"], &[]);
    let expected = "mayfly: posix_spawnp is not available in a unikernel (ENOSYS)\n\
                    spawn failed: Function not implemented (os error 38) (Unsupported)\n\
                    spawn failed: Function not implemented (os error 38) (Unsupported)\n";
    assert_eq!(unikernel.stdout, expected, "stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0));
}

#[test]
fn std_fs_in_memory_matches_native() {
    let native = run_native(&native_binary("tests/guests/std-probe", "std-probe"), &["files"], &[]);
    let unikernel = run_unikernel("tests/guests/std-probe", &["files"], &[]);
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains("all removed: true"), "{}", native.stdout);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);
}

#[test]
fn a_thread_overflowing_its_stack_stops_the_guest_with_a_report() {
    let unikernel = run_unikernel("tests/guests/std-probe", &["overflow"], &[]);
    assert_eq!(unikernel.stdout, "overflowing a thread's stack\n", "stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(101), "stderr: {}", unikernel.stderr);
    assert_eq!(
        unikernel.stderr.trim_end(),
        "mayfly: guest panicked: thread 2 overflowed its stack (no guard page: the heap may be damaged)"
    );
}

#[test]
fn building_a_std_program_without_mayfly_libc_says_how_to_fix_it() {
    let out = mayfly()
        .arg("build")
        .arg(repo().join("examples/std-hello"))
        .arg("--target-dir")
        .arg(guest_target_dir())
        .env("MAYFLY_LIBC_DIR", "/nonexistent/mayfly-libc")
        .output()
        .expect("run mayfly build");
    let run = Run::from(out);
    assert_ne!(run.status, Some(0));
    run.assert_one_line_error("set MAYFLY_LIBC_DIR to its directory");
}

#[test]
fn crates_io_crates_clap_serde_rayon_anyhow_work_unchanged() {
    let native_crates = native_binary("tests/guests/std-crates", "std-crates");
    let native = run_native(&native_crates, &["--name", "Ada", "x", "y"], &[]);
    let unikernel = run_unikernel("tests/guests/std-crates", &["--name", "Ada", "x", "y"], &[]);
    assert_eq!(native.status, Some(0), "native stderr: {}", native.stderr);
    assert!(native.stdout.contains("round trip equal: true"), "{}", native.stdout);
    assert_eq!(unikernel.stdout, native.stdout, "unikernel stderr: {}", unikernel.stderr);
    assert_eq!(unikernel.status, Some(0), "stderr: {}", unikernel.stderr);

    // A usage error: clap's message (stderr natively, the console here) and its status 2.
    let native = run_native(&native_crates, &["--bogus"], &[]);
    let unikernel = run_unikernel("tests/guests/std-crates", &["--bogus"], &[]);
    assert_eq!(native.status, Some(2));
    assert_eq!(unikernel.stdout, native.stdout + &native.stderr);
    assert_eq!(unikernel.status, Some(2), "stderr: {}", unikernel.stderr);
}

#[test]
fn running_out_of_memory_for_threads_is_a_panic_with_its_location() {
    let unikernel = run_unikernel("tests/guests/std-probe", &["too-many-threads"], &[]);
    assert_eq!(unikernel.status, Some(101), "stderr: {}", unikernel.stderr);
    // The message is longer than a line: the monitor's diagnosis still has all of it.
    let diagnosis = unikernel.stderr.trim_end();
    assert!(
        diagnosis.starts_with("mayfly: guest panicked: thread 'main' (1) panicked at "),
        "{diagnosis}"
    );
    assert!(diagnosis.contains("failed to spawn thread: Os { code: 11"), "{diagnosis}");
}

/// Waits (at most 10 s) until the guest has printed `needle`.
fn wait_for_stdout(running: &Running, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !running.stdout().contains(needle) {
        assert!(std::time::Instant::now() < deadline, "no {needle:?} in {:?}", running.stdout());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn std_echo_serves_tcp_with_a_thread_per_connection() {
    use std::io::{Read, Write};
    let image = guest_image("examples/std-echo");
    let running =
        Running::start(&image, &["--publish", "0:7", "--timeout", "30"], &["connections=3"]);
    wait_for_stdout(&running, "listening on port 7\n");
    // Three connections open at once, served in the reverse order: each has its own thread.
    let mut clients: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(running.addr).expect("connect to the published port"))
        .collect();
    for (i, client) in clients.iter_mut().enumerate().rev() {
        client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let message = format!("message {i} ").repeat(2000);
        client.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).expect("read the echo");
        assert!(echoed == message.as_bytes(), "connection {i}: a different echo");
        // Then the end of the stream both ways. (Half-closing before the echo is back loses
        // its last part: a bug of the library OS's TCP close, seen with the no_std tcp-echo too.)
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.read(&mut [0u8; 16]).expect("read the end"), 0);
    }
    let (status, stderr) = running.wait(std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "stderr: {stderr}");
}

#[test]
fn a_std_program_declares_a_nic_only_if_it_uses_sockets() {
    require_kvm();
    // std-hello has no socket code: its image declares no NIC, so --publish is refused.
    let run = run_image(&guest_image("examples/std-hello"), &["--publish", "0:80"], &["quick"]);
    assert_ne!(run.status, Some(0));
    run.assert_one_line_error("the image declares no network device");
    // The fix it suggests fits a std program (not only the no_std `net` feature).
    run.assert_one_line_error("a std program declares one when it uses sockets (std::net");
    // std-echo keeps it (std_echo_serves_tcp_with_a_thread_per_connection publishes a port).
}

#[test]
fn what_a_std_program_wrote_to_a_socket_reaches_the_peer_after_it_exits() {
    use std::io::Read;
    let image = guest_image("examples/std-echo");
    let running =
        Running::start(&image, &["--publish", "0:7", "--timeout", "30"], &["greet=300000"]);
    wait_for_stdout(&running, "listening on port 7\n");
    let mut client = std::net::TcpStream::connect(running.addr).expect("connect");
    client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).expect("read to the end");
    assert_eq!(greeting.len(), 300_000, "bytes received before the end of the stream");
    let (status, stderr) = running.wait(std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "stderr: {stderr}");
}

/// CPU time (user + system, in clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/pid/stat");
    let fields: Vec<&str> =
        stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn tokio_echo_runs_unchanged_and_sleeps_when_idle() {
    use std::io::{Read, Write};
    let image = guest_image("examples/tokio-echo");
    let running =
        Running::start(&image, &["--publish", "0:7", "--timeout", "30"], &["connections=3"]);
    wait_for_stdout(&running, "listening on port 7\n");
    assert!(running.stdout().contains("timer slept at least 10 ms: true"), "{}", running.stdout());
    // Idle: the runtime waits in epoll_wait, the vCPU in the monitor (no spinning).
    let before = cpu_ticks(running.pid());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let idle = cpu_ticks(running.pid()) - before;
    assert!(idle <= 10, "an idle tokio guest used {idle} ticks of CPU in 0.5 s");
    let mut clients: Vec<std::net::TcpStream> =
        (0..3).map(|_| std::net::TcpStream::connect(running.addr).expect("connect")).collect();
    for (i, client) in clients.iter_mut().enumerate().rev() {
        client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let message = format!("tokio {i} ").repeat(3000);
        client.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).expect("read the echo");
        assert!(echoed == message.as_bytes(), "connection {i}: a different echo");
        client.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(client.read(&mut [0u8; 16]).expect("read the end"), 0);
    }
    let (status, stderr) = running.wait(std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "stderr: {stderr}");
}

#[test]
fn hyper_serves_json_over_http_unchanged() {
    use std::io::{Read, Write};
    let image = guest_image("examples/hyper-hello");
    let running =
        Running::start(&image, &["--publish", "0:80", "--timeout", "30"], &["connections=2"]);
    wait_for_stdout(&running, "listening on port 80\n");
    for (method, path) in [("GET", "/some/path"), ("POST", "/other")] {
        let mut client = std::net::TcpStream::connect(running.addr).expect("connect");
        client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: guest\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        client.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).expect("read the response");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("content-type: application/json\r\n"), "{response}");
        let body = format!(
            r#"{{"hello":"from hyper in a unikernel","method":"{method}","path":"{path}"}}"#
        );
        assert!(response.ends_with(&body), "{response}");
    }
    let (status, stderr) = running.wait(std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "stderr: {stderr}");
}

#[test]
fn mayfly_serve_runs_a_std_hyper_image_like_the_others() {
    use std::io::{Read, Write};
    let image = guest_image("examples/hyper-hello");
    let config = guest_target_dir().join(format!("std-serve-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
             [[service]]\nname = \"hyper\"\nimage = \"{}\"\npath_prefix = \"/\"\nguest_port = 80\n",
            image.display()
        ),
    )
    .unwrap();
    let mut cmd = mayfly();
    cmd.arg("serve").arg("--config").arg(&config);
    let (_serve, rest) = Running::spawn(cmd, "mayfly serve: gateway on http://");
    let gateway: std::net::SocketAddr =
        rest.split_whitespace().next().and_then(|a| a.parse().ok()).expect("the gateway address");
    for n in 0..3 {
        let mut client = std::net::TcpStream::connect(gateway).expect("connect to the gateway");
        client.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        let request = format!("GET /served/{n} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        client.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).expect("read the response");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        let body = format!(r#""path":"/served/{n}"}}"#);
        assert!(response.ends_with(&body), "{response}");
    }
    let _ = std::fs::remove_file(&config);
}
