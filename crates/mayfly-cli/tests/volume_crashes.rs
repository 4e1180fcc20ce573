//! The reliability test of volumes: thousands of random PUT and DELETE requests to kv, whose
//! store lives on a volume, while its monitor is SIGKILLed at random points. After every
//! restart each acknowledged write is there, the one write in flight at the kill is either
//! wholly there or wholly absent, and nothing else changed: checked against a model.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const KEYS: u64 = 24;
const OPS: u64 = 3000;
/// Crash points to try at least (a fast host does many operations per life: the test goes on
/// until it has both enough operations and enough kills).
const CRASHES: u64 = 100;
const BUDGET: Duration = Duration::from_secs(50);

/// The write a kill interrupted: its key, and the value before and after it (`None`: absent).
struct InFlight {
    key: String,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
}

fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<HttpReply> {
    http_request(addr, method, path, &[], body, Duration::from_secs(10))
}

#[test]
fn acknowledged_writes_survive_random_kills_of_the_monitor() {
    let image = guest_image("examples/kv");
    let dir = repo().join("target/test-scratch/volume-crashes");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spec = format!("{}:size=4M", dir.join("kv.img").display());
    let seed = 0x5eed_0000 + u64::from(std::process::id());
    let mut rng = Rng(seed);
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut in_flight: Option<InFlight> = None;
    let (mut ops, mut crash_points, mut lost, mut in_flight_kept) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    while (ops < OPS || crash_points < CRASHES) && start.elapsed() < BUDGET {
        let options = ["--volume", &spec, "--publish", "127.0.0.1:0:80", "--timeout", "60"];
        let mut monitor = Running::start(&image, &options, &[]);
        let addr = monitor.addr;
        // The write the last kill interrupted: all or nothing.
        if let Some(f) = in_flight.take() {
            let reply = request(addr, "GET", &format!("/kv/{}", f.key), b"").expect("GET");
            let found = (reply.status == 200).then_some(reply.body);
            assert!(
                found == f.before || found == f.after,
                "seed {seed:#x}: {} is half-written after a kill: {:?} bytes, not {:?} or {:?}",
                f.key,
                found.as_ref().map(Vec::len),
                f.before.as_ref().map(Vec::len),
                f.after.as_ref().map(Vec::len)
            );
            in_flight_kept += u64::from(found == f.after && f.before != f.after);
            match found {
                Some(v) => model.insert(f.key, v),
                None => model.remove(&f.key),
            };
        }
        // Everything acknowledged is there, and nothing else.
        let list = request(addr, "GET", "/kv", b"").expect("GET /kv");
        let keys: serde_json::Value = serde_json::from_slice(&list.body).expect("key list");
        let keys: Vec<String> = keys["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().unwrap_or_default().to_owned())
            .collect();
        if keys != model.keys().cloned().collect::<Vec<_>>() {
            lost += 1;
        }
        for (key, value) in &model {
            let reply = request(addr, "GET", &format!("/kv/{key}"), b"").expect("GET");
            if reply.status != 200 || &reply.body != value {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "seed {seed:#x}: acknowledged writes lost or changed after a kill");
        // A life of random writes, ended by a SIGKILL at a random moment.
        let pid = monitor.pid();
        let delay = Duration::from_micros(rng.below(150_000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: kill(2) on the monitor we started and have not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        });
        loop {
            let key = format!("k{}", rng.below(KEYS));
            let put = rng.below(10) < 7;
            let value =
                format!("\"{ops}-{}\"", "x".repeat(usize::try_from(rng.below(3000)).unwrap_or(0)))
                    .into_bytes();
            let (method, body, after) = if put {
                ("PUT", value.as_slice(), Some(value.clone()))
            } else {
                ("DELETE", &b""[..], None)
            };
            let before = model.get(&key).cloned();
            match request(addr, method, &format!("/kv/{key}"), body) {
                Some(reply) if matches!(reply.status, 201 | 204 | 404) => {
                    ops += 1;
                    match after {
                        Some(v) => model.insert(key, v),
                        None => model.remove(&key),
                    };
                }
                Some(reply) => panic!("seed {seed:#x}: {method} {key}: {reply:?}"),
                None => {
                    in_flight = Some(InFlight { key, before, after });
                    break;
                }
            }
        }
        killer.join().unwrap();
        monitor.kill();
        crash_points += 1;
    }
    eprintln!(
        "volume crashes: {ops} acknowledged operations, {crash_points} crash points (SIGKILL), \
         {lost} acknowledged writes lost, {in_flight_kept} interrupted writes found whole, \
         seed {seed:#x}, {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(crash_points >= CRASHES / 2, "only {crash_points} crash points in {BUDGET:?}");
    assert!(ops >= 1000, "only {ops} operations in {BUDGET:?}");
}
