//! The probe's volume modes: the block API and the store on it, as the tests drive them.

use mayfly::block::{BlockError, Volume, open_store};
use mayfly::prelude::*;
use mayfly::time::Instant;

/// `volume-info`, `volume-put K V`, `volume-get K`, `volume-delete K`, `volume-write-ro`,
/// `volume-bench N`; `None` for other modes.
pub fn run(mode: &str, a: Option<&str>, b: Option<&str>) -> Option<i32> {
    Some(match mode {
        "volume-info" => match Volume::attached() {
            Some(v) => {
                println!("volume: {} sectors, read-only {}", v.sectors(), v.read_only());
                0
            }
            None => {
                println!("volume: none");
                1
            }
        },
        "volume-put" | "volume-get" | "volume-delete" => store_op(mode, a?, b),
        "volume-write-ro" => {
            let mut v = Volume::attached()?;
            let w = v.write(0, &[1; 512]).and_then(|()| v.flush());
            println!("volume-write-ro: {w:?}");
            i32::from(w != Err(BlockError::ReadOnly))
        }
        "volume-bench" => bench(a.and_then(|n| n.parse().ok()).unwrap_or(20_000)),
        _ => return None,
    })
}

fn store_op(mode: &str, key: &str, value: Option<&str>) -> i32 {
    let mut store = match open_store() {
        Ok(store) => store,
        Err(e) => {
            println!("volume: cannot open the store: {e}");
            return 2;
        }
    };
    match mode {
        "volume-put" => match store.put(key.as_bytes(), value.unwrap_or("").as_bytes()) {
            Ok(()) => println!("stored {key}"),
            Err(e) => {
                println!("volume-put: {e}");
                return 3;
            }
        },
        "volume-delete" => println!("deleted {key}: {:?}", store.delete(key.as_bytes())),
        _ => match store.get(key.as_bytes()) {
            Some(v) => println!("{key} = {}", String::from_utf8_lossy(v)),
            None => println!("{key} absent"),
        },
    }
    0
}

/// `n` random 4 KiB reads (in batches of 32, one exit each) and 200 flushed 4 KiB writes,
/// timed from inside the guest.
fn bench(n: u64) -> i32 {
    let Some(mut v) = Volume::attached() else {
        println!("volume-bench: no volume");
        return 1;
    };
    let blocks = v.sectors() / 8;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut bufs = vec![[0u8; 4096]; 32];
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let mut reads: Vec<(u64, &mut [u8])> =
            bufs.iter_mut().map(|b| ((next() % blocks) * 8, &mut b[..])).collect();
        if v.read_many(&mut reads).is_err() {
            println!("volume-bench: read failed");
            return 2;
        }
        done += reads.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "volume-bench: {done} random 4 KiB reads in {secs:.3} s: {:.0} reads/s",
        done as f64 / secs
    );
    let mut lat = Vec::new();
    for i in 0..200u64 {
        let at = Instant::now();
        let ok = v.write((next() % blocks) * 8, &[i as u8; 4096]).and_then(|()| v.flush());
        if ok.is_err() {
            println!("volume-bench: write failed");
            return 2;
        }
        lat.push(at.elapsed().as_micros() as u64);
    }
    lat.sort_unstable();
    println!(
        "volume-bench: flushed 4 KiB write latency us: p50 {} p90 {} p99 {}",
        lat[100], lat[180], lat[198]
    );
    0
}
