//! Probes for std programs as unikernels, one mode per argument; each prints lines that must be
//! the same natively and under Mayfly (the tests compare them).
//!
//! Modes: `tls` (thread-locals with initialisers and destructors), `errors` (I/O errors std
//! reports), `syscall` (an unknown system call number, twice), `unavailable` (fork, twice: for Mayfly only),
//! `alloc` (the malloc family through std's allocator, with large alignments), `threads`
//! (std::thread and std::sync), `files` (std::fs under /tmp), `environment` (variables,
//! working directory, stdin), `overflow` (a thread's stack: for Mayfly only), `costs`
//! (thread timings, not compared), `too-many-threads` (for Mayfly only), `spawn` (a process: for Mayfly only), `abort`.
use std::alloc::{Layout, alloc, dealloc, realloc};
use std::cell::{Cell, RefCell};

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(40) };
    static NAMES: RefCell<Vec<String>> = RefCell::new(vec!["first".to_string()]);
}

fn tls() {
    COUNTER.with(|c| c.set(c.get() + 2));
    NAMES.with(|n| n.borrow_mut().push("second".into()));
    println!("tls counter: {}", COUNTER.with(Cell::get));
    println!("tls names: {:?}", NAMES.with(|n| n.borrow().clone()));
}

fn errors() {
    println!("open missing file: {:?}", std::fs::File::open("/no/such/file").map(|_| ()));
    println!("read missing dir: {:?}", std::fs::read_dir("/no/such/dir").map(|_| ()));
    let err = std::io::Error::from_raw_os_error(libc::EINVAL);
    println!("EINVAL: {err}");
}

fn syscall() {
    for _ in 0..2 {
        // SAFETY: a system call number no kernel has: it only fails.
        let ret = unsafe { libc::syscall(4000) };
        println!("syscall 4000: {ret}, {}", std::io::Error::last_os_error());
    }
}

/// Only under Mayfly (natively, fork would succeed).
fn unavailable() {
    for _ in 0..2 {
        // SAFETY: under Mayfly fork only fails; natively this mode is not run.
        let pid = unsafe { libc::fork() };
        println!("fork: {pid}, {}", std::io::Error::last_os_error());
    }
}

fn allocations() {
    for align in [8, 16, 64, 4096, 1 << 16] {
        let layout = Layout::from_size_align(1000, align).expect("layout");
        // SAFETY: a non-zero layout; the block is written within bounds and freed once.
        unsafe {
            let p = alloc(layout);
            assert!(!p.is_null());
            p.write_bytes(0xab, 1000);
            let q = realloc(p, layout, 100_000);
            assert!(!q.is_null());
            let ok = (q as usize).is_multiple_of(align) && *q.add(999) == 0xab;
            println!("align {align}: aligned and kept: {ok}");
            dealloc(q, Layout::from_size_align(100_000, align).expect("layout"));
        }
    }
    let big: Vec<u64> = (0..4_000_000).collect();
    println!("32 MB vector sum: {}", big.iter().sum::<u64>());
}

/// Threads and synchronisation: spawn/join, Mutex + Condvar, channels, scoped threads, RwLock,
/// Barrier, OnceLock, park/unpark, sleeping threads, per-thread thread-locals. Prints only
/// results that do not depend on scheduling order.
fn threads() {
    use std::sync::{Arc, Barrier, Condvar, Mutex, OnceLock, RwLock, mpsc};
    use std::thread;
    use std::time::{Duration, Instant};

    let handles: Vec<_> =
        (0..4u64).map(|i| thread::spawn(move || (i, (0..=i * 1000).sum::<u64>()))).collect();
    let sums: Vec<(u64, u64)> = handles.into_iter().map(|h| h.join().expect("join")).collect();
    println!("joined sums: {sums:?}");

    let counter = Arc::new(Mutex::new(0u64));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                for _ in 0..1000 {
                    *counter.lock().expect("lock") += 1;
                    thread::yield_now();
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().expect("join"));
    println!("mutex counter: {}", *counter.lock().expect("lock"));

    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let signaller = {
        let pair = Arc::clone(&pair);
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(10));
            *pair.0.lock().expect("lock") = true;
            pair.1.notify_all();
        })
    };
    let mut ready = pair.0.lock().expect("lock");
    while !*ready {
        ready = pair.1.wait(ready).expect("wait");
    }
    drop(ready);
    signaller.join().expect("join");
    println!("condvar: notified");
    let (lock, cvar) = &*pair;
    let (_guard, timeout) =
        cvar.wait_timeout(lock.lock().expect("lock"), Duration::from_millis(15)).expect("wait");
    println!("condvar wait_timeout timed out: {}", timeout.timed_out());

    let (tx, rx) = mpsc::channel();
    for id in 0..3 {
        let tx = tx.clone();
        thread::spawn(move || {
            for n in 0..5 {
                tx.send(id * 100 + n).expect("send");
            }
        });
    }
    drop(tx);
    let mut received: Vec<i32> = rx.iter().collect();
    received.sort();
    println!("channel received {} values, sum {}", received.len(), received.iter().sum::<i32>());
    let (sync_tx, sync_rx) = mpsc::sync_channel(0);
    let producer = thread::spawn(move || (0..10).for_each(|n| sync_tx.send(n).expect("send")));
    println!("rendezvous channel sum: {}", sync_rx.iter().sum::<i32>());
    producer.join().expect("join");
    println!(
        "recv_timeout on an idle channel: {:?}",
        mpsc::channel::<()>().1.recv_timeout(Duration::from_millis(5))
    );

    let mut data = vec![1u64, 2, 3, 4, 5, 6, 7, 8];
    thread::scope(|s| {
        for chunk in data.chunks_mut(3) {
            s.spawn(move || chunk.iter_mut().for_each(|x| *x *= 10));
        }
    });
    println!("scoped threads: {data:?}");

    let table = Arc::new(RwLock::new(vec![1, 2, 3]));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let table = Arc::clone(&table);
            thread::spawn(move || table.read().expect("read").iter().sum::<i32>())
        })
        .collect();
    table.write().expect("write").push(4);
    let mut seen: Vec<i32> = readers.into_iter().map(|r| r.join().expect("join")).collect();
    seen.sort();
    println!("rwlock readers saw sums in {{6, 10}}: {}", seen.iter().all(|s| *s == 6 || *s == 10));

    let barrier = Arc::new(Barrier::new(4));
    let leaders: usize = (0..4)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || barrier.wait().is_leader())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| usize::from(h.join().expect("join")))
        .sum();
    println!("barrier leaders: {leaders}");

    static ONCE: OnceLock<String> = OnceLock::new();
    let inits: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                ONCE.get_or_init(|| format!("set by one of 4 ({})", i < 4)).clone()
            })
        })
        .collect();
    let values: Vec<String> = inits.into_iter().map(|h| h.join().expect("join")).collect();
    println!(
        "once lock: {} distinct value(s): {}",
        values.iter().collect::<std::collections::BTreeSet<_>>().len(),
        values[0]
    );

    let parked = thread::spawn(|| {
        thread::park();
        "unparked"
    });
    thread::sleep(Duration::from_millis(5));
    parked.thread().unpark();
    println!("park: {}", parked.join().expect("join"));

    let started = Instant::now();
    let sleepers: Vec<_> =
        (0..4).map(|_| thread::spawn(|| thread::sleep(Duration::from_millis(50)))).collect();
    sleepers.into_iter().for_each(|s| s.join().expect("join"));
    let took = started.elapsed();
    println!(
        "4 threads slept 50 ms concurrently: {}",
        took >= Duration::from_millis(50) && took < Duration::from_millis(180)
    );

    let per_thread: Vec<u64> = (0..3u64)
        .map(|i| {
            thread::spawn(move || {
                COUNTER.with(|c| c.set(c.get() + i));
                COUNTER.with(Cell::get)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    println!("thread-locals per thread: {per_thread:?}, main's: {}", COUNTER.with(Cell::get));

    // Thread-local destructors run when a thread ends (through a pthread key's destructor).
    static DROPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    struct CountsDrops(u8);
    impl Drop for CountsDrops {
        fn drop(&mut self) {
            DROPPED.fetch_add(usize::from(self.0), std::sync::atomic::Ordering::SeqCst);
        }
    }
    thread_local! {
        static GUARD: CountsDrops = const { CountsDrops(1) };
    }
    (0..3)
        .map(|_| thread::spawn(|| GUARD.with(|g| g.0)))
        .collect::<Vec<_>>()
        .into_iter()
        .for_each(|h| assert_eq!(h.join().expect("join"), 1));
    println!(
        "thread-local destructors run at thread exit: {}",
        DROPPED.load(std::sync::atomic::Ordering::SeqCst)
    );

    let named = thread::Builder::new().name("worker-7".into()).stack_size(64 * 1024);
    let name = named
        .spawn(|| thread::current().name().map(str::to_owned))
        .expect("spawn")
        .join()
        .expect("join");
    println!("named thread: {name:?}");
    let caught = thread::spawn(|| 5).join();
    println!("join result: {caught:?}");
}

/// Files in a fresh directory under /tmp (natively a unique one; its path is never printed).
fn files() {
    use std::fs::{self, File, OpenOptions};
    use std::io::{Read, Seek, SeekFrom, Write};

    let base = std::path::PathBuf::from(format!("/tmp/std-probe-fs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("sub/deeper")).expect("create_dir_all");
    fs::write(base.join("a.txt"), "hello").expect("write");
    println!("read back: {:?}", fs::read_to_string(base.join("a.txt")));
    let mut file = OpenOptions::new().append(true).open(base.join("a.txt")).expect("append");
    file.write_all(b", world").expect("write_all");
    drop(file);
    println!("after append: {:?}", fs::read_to_string(base.join("a.txt")));
    let meta = fs::metadata(base.join("a.txt")).expect("metadata");
    println!("metadata: len {} file {} dir {}", meta.len(), meta.is_file(), meta.is_dir());
    println!(
        "dir metadata: dir {}",
        fs::metadata(base.join("sub")).map(|m| m.is_dir()).unwrap_or(false)
    );

    let mut file =
        OpenOptions::new().read(true).write(true).open(base.join("a.txt")).expect("open rw");
    file.seek(SeekFrom::Start(7)).expect("seek");
    let mut tail = String::new();
    file.read_to_string(&mut tail).expect("read");
    println!("from offset 7: {tail:?}");
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.write_all(b"J").expect("write");
    file.set_len(5).expect("set_len");
    drop(file);
    println!("after overwrite and truncate: {:?}", fs::read_to_string(base.join("a.txt")));

    fs::rename(base.join("a.txt"), base.join("b.txt")).expect("rename");
    println!(
        "renamed: a exists {} b exists {}",
        base.join("a.txt").exists(),
        base.join("b.txt").exists()
    );
    fs::copy(base.join("b.txt"), base.join("sub/c.txt")).expect("copy");
    File::create(base.join("sub/deeper/empty")).expect("create");
    let mut entries: Vec<String> = fs::read_dir(&base)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            format!(
                "{}{}",
                e.file_name().to_string_lossy(),
                if e.file_type().expect("type").is_dir() { "/" } else { "" }
            )
        })
        .collect();
    entries.sort();
    println!("entries: {entries:?}");
    println!("copied: {:?}", fs::read_to_string(base.join("sub/c.txt")));

    println!(
        "open missing: {:?}",
        File::open(base.join("missing")).map(|_| ()).map_err(|e| e.kind())
    );
    println!("create existing dir: {:?}", fs::create_dir(base.join("sub")).map_err(|e| e.kind()));
    println!("remove non-empty dir: {:?}", fs::remove_dir(base.join("sub")).map_err(|e| e.kind()));
    println!(
        "read_dir of a file: {:?}",
        fs::read_dir(base.join("b.txt")).map(|_| ()).map_err(|e| e.kind())
    );
    println!(
        "create_new existing: {:?}",
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(base.join("b.txt"))
            .map(|_| ())
            .map_err(|e| e.kind())
    );
    fs::remove_file(base.join("b.txt")).expect("remove_file");
    println!("removed: {}", !base.join("b.txt").exists());
    println!(
        "canonical: {}",
        fs::canonicalize(base.join("sub/../sub/./deeper"))
            .map(|p| p == base.join("sub/deeper"))
            .unwrap_or(false)
    );
    fs::remove_dir_all(&base).expect("remove_dir_all");
    println!("all removed: {}", !base.exists());
}

/// The process environment: variables set and removed, the working directory, stdin.
fn environment() {
    use std::io::Read;
    // SAFETY: single-threaded at this point.
    unsafe { std::env::set_var("STD_PROBE_SET", "one") };
    println!("set: {:?}", std::env::var("STD_PROBE_SET"));
    // SAFETY: as above.
    unsafe { std::env::set_var("STD_PROBE_SET", "two") };
    println!("overwritten: {:?}", std::env::var("STD_PROBE_SET"));
    let listed = std::env::vars().filter(|(k, _)| k.starts_with("STD_PROBE_")).count();
    println!("listed: {listed}");
    // SAFETY: as above.
    unsafe { std::env::remove_var("STD_PROBE_SET") };
    println!("removed: {:?}", std::env::var("STD_PROBE_SET").map_err(|e| e.to_string()));
    println!("temp dir: {}", std::env::temp_dir().display());
    std::env::set_current_dir("/tmp").expect("cd /tmp");
    println!("cwd: {}", std::env::current_dir().expect("cwd").display());
    std::fs::write("relative.txt", "here").expect("write relative");
    println!("relative file: {:?}", std::fs::read_to_string("/tmp/relative.txt"));
    std::fs::remove_file("relative.txt").expect("remove relative");
    println!(
        "cd into a file: {:?}",
        std::env::set_current_dir("/dev/null/x").map_err(|e| e.kind()).is_err()
    );
    let mut input = String::new();
    println!(
        "stdin: {:?} {input:?}",
        std::io::stdin().read_to_string(&mut input).map_err(|e| e.kind())
    );
    println!(
        "parallelism at least 1: {}",
        std::thread::available_parallelism().map(|n| n.get() >= 1).unwrap_or(false)
    );
}

/// Only under Mayfly: a thread that overflows its 64 KiB stack, yielding at every level.
fn overflow() {
    fn deeper(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth as u8; 512]);
        std::thread::yield_now();
        if depth == u64::MAX {
            return 0;
        }
        u64::from(frame[7]) + deeper(depth + 1)
    }
    let child = std::thread::Builder::new().stack_size(64 * 1024).spawn(|| deeper(0));
    println!("overflowing a thread's stack");
    println!("{:?}", child.expect("spawn").join().map_err(|_| "panicked"));
}

/// Timings, not compared by the tests (design.md quotes them): a rendezvous-channel round trip
/// between two threads, `yield_now`, spawn and join.
fn costs() {
    use std::sync::mpsc::sync_channel;
    use std::time::Instant;
    let n = 100_000u32;
    let (to_b, from_a) = sync_channel::<u32>(0);
    let (to_a, from_b) = sync_channel::<u32>(0);
    let echo =
        std::thread::spawn(move || from_a.iter().for_each(|v| to_a.send(v + 1).expect("send")));
    let start = Instant::now();
    let mut v = 0;
    for _ in 0..n {
        to_b.send(v).expect("send");
        v = from_b.recv().expect("recv");
    }
    let took = start.elapsed();
    drop(to_b);
    echo.join().expect("join");
    println!("channel round trip: {:.0} ns ({v} trips)", took.as_nanos() as f64 / f64::from(n));
    let start = Instant::now();
    (0..n).for_each(|_| std::thread::yield_now());
    println!("yield_now: {:.0} ns", start.elapsed().as_nanos() as f64 / f64::from(n));
    let start = Instant::now();
    let handles: Vec<_> = (0..20).map(|i| std::thread::spawn(move || i)).collect();
    let sum: i32 = handles.into_iter().map(|h| h.join().expect("join")).sum();
    println!("spawn and join: {:.1} us ({sum})", start.elapsed().as_nanos() as f64 / 20.0 / 1000.0);
}

/// Only under Mayfly: more threads than the guest's memory holds (2 MiB stacks): std panics
/// when a spawn fails with EAGAIN.
fn too_many_threads() {
    let handles: Vec<_> = (0..1000)
        .map(|_| std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(1))))
        .collect();
    println!("spawned {} threads", handles.len());
}

/// Only under Mayfly: starting a process fails (twice, said once).
fn spawn() {
    for _ in 0..2 {
        match std::process::Command::new("true").status() {
            Ok(status) => println!("spawned: {status}"),
            Err(e) => println!("spawn failed: {e} ({:?})", e.kind()),
        }
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "tls" => tls(),
        "errors" => errors(),
        "syscall" => syscall(),
        "unavailable" => unavailable(),
        "alloc" => allocations(),
        "threads" => threads(),
        "spawn" => spawn(),
        "files" => files(),
        "environment" => environment(),
        "overflow" => overflow(),
        "costs" => costs(),
        "too-many-threads" => too_many_threads(),
        "abort" => {
            println!("aborting");
            std::process::abort();
        }
        other => {
            eprintln!("std-probe: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
