//! The volume's batches: fuzzed requests (operations, sector ranges at the volume's edges,
//! buffers anywhere) in fuzzed batches. The oracle: a malformed batch stops the guest and
//! changes neither the volume nor guest memory; a valid one does exactly what a model of the
//! file does, and writes only the reads' buffers and the status fields.

use super::Reader;
use super::hypercall::{guest_writable, in_guest, place, plan};
use mayfly_abi::block::{
    BLOCK_BATCH_MAX, BlockArgs, BlockRequest, REQUEST_SECTORS_MAX, SECTOR_SIZE,
};
use mayfly_abi::{Hypercall, Status};
use mayfly_monitor::Outcome;
use mayfly_monitor::guest_memory::GuestRam;
use mayfly_monitor::hypercalls::{self, Devices, Step};
use mayfly_monitor::volume::{Volume, VolumeSpec};

/// Sectors of every case's volume.
const SECTORS: u64 = 64;
const SECTOR: u64 = SECTOR_SIZE as u64;

/// A guest address: usually in the heap (valid and writable), else anywhere `place` puts it.
fn spot(r: &mut Reader, len: u64) -> u64 {
    if r.pick(4) < 3 { 0x20_0000 + (u64::from(r.u32()) % 0x40_0000) / 8 * 8 } else { place(r, len) }
}

#[derive(Debug, Clone)]
pub struct BlockCase {
    pub args_at: u64,
    pub table_at: u64,
    pub count: u32,
    pub requests: Vec<BlockRequest>,
    pub read_only: bool,
}

impl BlockCase {
    pub fn decode(r: &mut Reader) -> BlockCase {
        let n = 1 + usize::from(r.pick(4));
        let requests = (0..n)
            .map(|_| {
                let op = match r.pick(8) {
                    0..=2 => 0,
                    3..=5 => 1,
                    6 => 2,
                    _ => r.u32(),
                };
                let sectors = match r.pick(6) {
                    0..=3 => 1 + u32::from(r.pick(8)),
                    4 => 0,
                    _ => r.u32() % (REQUEST_SECTORS_MAX + 8),
                };
                let sector = match r.pick(5) {
                    0..=2 => u64::from(r.pick(SECTORS as u8)),
                    3 => SECTORS - u64::from(r.pick(4)),
                    _ => r.u64(),
                };
                let len = u64::from(sectors) * SECTOR;
                let buf = spot(r, len.min(1 << 20));
                BlockRequest { op, sectors, sector, buf, status: r.u32() as i32, reserved: 0 }
            })
            .collect::<Vec<_>>();
        let table_len = (n * size_of::<BlockRequest>()) as u64;
        let count = match r.pick(8) {
            0 => r.u32() % (BLOCK_BATCH_MAX * 2),
            _ => n as u32,
        };
        BlockCase {
            args_at: spot(r, 16),
            table_at: spot(r, table_len),
            count,
            requests,
            read_only: r.pick(5) == 0,
        }
    }
}

fn valid(case: &BlockCase, req: &BlockRequest) -> bool {
    let len = u64::from(req.sectors) * SECTOR;
    match req.op {
        2 => true,
        0 | 1 => {
            (1..=REQUEST_SECTORS_MAX).contains(&req.sectors)
                && req.sector.checked_add(u64::from(req.sectors)).is_some_and(|e| e <= SECTORS)
                && if req.op == 0 { guest_writable(req.buf, len) } else { in_guest(req.buf, len) }
        }
        _ => {
            let _ = case;
            false
        }
    }
}

fn bytes_of(ram: &GuestRam, addr: u64, len: u64) -> Vec<u8> {
    ram.read_bytes(addr, len as usize).unwrap_or_default()
}

/// Runs the case; returns the path taken.
pub fn check(case: &BlockCase) -> String {
    let mem = super::hypercall::MEM;
    let ram = GuestRam::new(mem).expect("guest memory");
    // Noise everywhere the case may touch, then the structures.
    static NOISE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let noise = NOISE.get_or_init(|| {
        (0..super::hypercall::MEM - mayfly_abi::layout::RESERVED_END)
            .map(|a| ((a * 13) >> 3) as u8)
            .collect()
    });
    let _ = ram.write_bytes(mayfly_abi::layout::RESERVED_END, noise);
    for (i, req) in case.requests.iter().enumerate() {
        let _ = ram.write(case.table_at + (i * size_of::<BlockRequest>()) as u64, *req);
    }
    let args = BlockArgs { requests: case.table_at, count: case.count, status: 7 };
    let _ = ram.write(case.args_at, args);

    let dir = std::env::temp_dir().join(format!("mayfly-block-case-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{:?}.img", std::thread::current().id()).replace(['(', ')'], ""));
    let initial: Vec<u8> = (0..SECTORS * SECTOR).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &initial).expect("volume file");
    let spec = VolumeSpec { path: path.clone(), read_only: case.read_only, create_size: None };
    let volume = Volume::open(&spec).expect("volume");
    let before = bytes_of(&ram, 0, mem);

    let step = hypercalls::dispatch(
        &ram,
        &plan(),
        Hypercall::Block.doorbell(),
        case.args_at as u32,
        4,
        None,
        Devices { nic: None, volume: Some(&volume) },
    );
    drop(volume);
    let file = std::fs::read(&path).expect("volume file");
    let _ = std::fs::remove_file(&path);

    let table_len = u64::from(case.count) * size_of::<BlockRequest>() as u64;
    let args_ok =
        u64::from(case.args_at as u32) == case.args_at && guest_writable(case.args_at, 16);
    let batch_ok = args_ok
        && case.count <= BLOCK_BATCH_MAX
        && guest_writable(case.table_at, table_len)
        && case.count as usize <= case.requests.len()
        && case.requests.iter().take(case.count as usize).all(|r| valid(case, r));
    // Overlapping structures make the oracle's copy differ from what the monitor reads: skip
    // the exact oracle then, keep the safety checks.
    let overlaps = |a: u64, al: u64, b: u64, bl: u64| a < b + bl && b < a + al;
    let tangled = overlaps(case.args_at, 16, case.table_at, table_len.max(1))
        || case.requests.iter().any(|r| {
            let len = u64::from(r.sectors) * SECTOR;
            r.op == 0
                && (overlaps(r.buf, len, case.table_at, table_len.max(1))
                    || overlaps(r.buf, len, case.args_at, 16))
        });
    match step {
        Step::Stop(Outcome::Misbehaved(why)) => {
            assert!(!batch_ok || tangled, "{case:?}: a valid batch was refused: {why}");
            assert_eq!(file, initial, "{case:?}: a refused batch touched the volume");
            assert!(
                bytes_of(&ram, 0, mem) == before,
                "{case:?}: a refused batch wrote guest memory"
            );
            assert!(!why.contains('\n'));
            "refused".into()
        }
        Step::Continue => {
            assert!(batch_ok || tangled, "{case:?}: a malformed batch was served");
            if tangled {
                return "served (tangled)".into();
            }
            // The model: the requests in order over the initial file.
            let mut model = initial.clone();
            let mut guest = before.clone();
            let mut all_ok = true;
            for req in case.requests.iter().take(case.count as usize) {
                if req.op > 1 {
                    continue; // a flush: nothing to model
                }
                let at = (req.sector * SECTOR) as usize;
                let len = req.sectors as usize * SECTOR as usize;
                match req.op {
                    0 => guest[req.buf as usize..req.buf as usize + len]
                        .copy_from_slice(&model[at..at + len]),
                    1 if case.read_only => all_ok = false,
                    1 => model[at..at + len]
                        .copy_from_slice(&guest[req.buf as usize..req.buf as usize + len]),
                    _ => {}
                }
            }
            assert_eq!(file, model, "{case:?}: the volume differs from the model");
            // Status fields: compare them separately, then everything else byte for byte.
            let after = bytes_of(&ram, 0, mem);
            let args_after: BlockArgs = ram.read(case.args_at).expect("args");
            let expected = if all_ok { Status::Ok } else { Status::Invalid } as i32;
            assert_eq!(args_after.status, expected, "{case:?}");
            let mut masked = after.clone();
            masked[case.args_at as usize + 12..case.args_at as usize + 16]
                .copy_from_slice(&guest[case.args_at as usize + 12..case.args_at as usize + 16]);
            for i in 0..case.count as usize {
                let s = case.table_at as usize + i * size_of::<BlockRequest>() + 24;
                masked[s..s + 4].copy_from_slice(&guest[s..s + 4]);
            }
            assert!(masked == guest, "{case:?}: guest memory differs from the model");
            if case.read_only && !all_ok { "served, write refused (read-only)" } else { "served" }
                .into()
        }
        other => panic!("{case:?}: {other:?}"),
    }
}

pub fn check_bytes(bytes: &[u8]) -> String {
    check(&BlockCase::decode(&mut Reader::new(bytes)))
}
