//! Probes for std programs as unikernels, one mode per argument; each prints lines that must be
//! the same natively and under Mayfly (the tests compare them).
//!
//! Modes: `tls` (thread-locals with initialisers and destructors), `errors` (I/O errors std
//! reports), `syscall` (an unknown system call number, twice), `unavailable` (fork, twice: for Mayfly only),
//! `alloc` (the malloc family through std's allocator, with large alignments), `abort`.
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

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "tls" => tls(),
        "errors" => errors(),
        "syscall" => syscall(),
        "unavailable" => unavailable(),
        "alloc" => allocations(),
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
