//! Modes: `read` (reads, lists and inspects the files of its crate, relative to the working
//! directory: run it natively from the crate's directory) and `write` (tries to change them:
//! natively they are ordinary files, in a unikernel they are packed into the image, read-only);
//! `alloc N` allocates N MiB.
use std::fs;
use std::io::Read;

fn list(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let kind = if e.file_type().expect("file type").is_dir() { "/" } else { "" };
            format!("{}{kind}", e.file_name().to_string_lossy())
        })
        .collect();
    names.sort();
    names
}

fn read() {
    print!("static/hello.txt: {}", fs::read_to_string("static/hello.txt").expect("read hello"));
    print!("notes.txt: {}", fs::read_to_string("notes.txt").expect("read notes"));
    println!("static/: {:?}", list("static"));
    println!("static/nested/: {:?}", list("static/nested"));
    let json = fs::read_to_string("static/nested/data.json").expect("read data.json");
    println!("data.json: {}", json.trim());
    let big = fs::metadata("static/nested/big.txt").expect("metadata");
    println!("big.txt: {} bytes, a file: {}", big.len(), big.is_file());
    let mut file = fs::File::open("static/nested/big.txt").expect("open big");
    let mut tail = String::new();
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(69_995)).expect("seek");
    file.read_to_string(&mut tail).expect("read the tail");
    println!("its tail: {tail:?}");
    println!("static is a directory: {}", fs::metadata("static").expect("stat").is_dir());
    let missing = fs::read("static/missing.txt").map_err(|e| e.kind());
    println!("static/missing.txt: {missing:?}");
}

fn write() {
    let attempts: [(&str, std::io::Result<()>); 4] = [
        ("write static/hello.txt", fs::write("static/hello.txt", "changed")),
        ("create static/new.txt", fs::write("static/new.txt", "new")),
        ("remove notes.txt", fs::remove_file("notes.txt")),
        ("rename static/hello.txt", fs::rename("static/hello.txt", "/tmp/hello.txt")),
    ];
    for (what, result) in attempts {
        println!("{what}: {:?}", result.map_err(|e| e.to_string()));
    }
    print!("static/hello.txt: {}", fs::read_to_string("static/hello.txt").expect("read hello"));
    fs::write("/tmp/scratch.txt", "the writable tree stays").expect("write /tmp");
    println!("/tmp: {}", fs::read_to_string("/tmp/scratch.txt").expect("read /tmp"));
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("read") => read(),
        Some("write") => write(),
        Some("alloc") => {
            // Allocates and touches N MiB (a guest's memory limit shows).
            let mib: usize = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(1);
            let block = vec![1u8; mib << 20];
            println!("allocated {} MiB", block.iter().map(|&b| b as usize).sum::<usize>() >> 20);
        }
        other => {
            eprintln!("std-files: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}
