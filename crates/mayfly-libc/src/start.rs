//! The entry point of a std program: sets up the library OS, the main thread's thread-local
//! storage, `argv` and `environ`, runs the constructors (std's own argument capture is one) and
//! calls the program's C `main`, which rustc generates and which runs std's runtime start.

use alloc::vec::Vec;
use core::ffi::{c_char, c_int};
use mayfly::abi::BootInfo;

unsafe extern "C" {
    /// The C `main` that rustc emits for a binary crate.
    fn main(argc: c_int, argv: *mut *mut c_char, envp: *mut *mut c_char) -> c_int;
    // Bounds of the constructors, from Mayfly's std linker script.
    static __init_array_start: [InitFn; 0];
    static __init_array_end: [InitFn; 0];
}

type InitFn = unsafe extern "C" fn(c_int, *mut *mut c_char, *mut *mut c_char);

/// The entry point: the monitor jumps here in ring 3 with `rdi` = the boot info.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text.mayfly_start")]
extern "C" fn _start(boot: *const BootInfo) -> ! {
    // SAFETY: the monitor passes the address of the initialised boot info.
    unsafe { mayfly::libc_host::init(boot) };
    crate::thread::init_main_thread();

    // argv and envp point into a copy of the argument block (NUL-separated C strings).
    let info = mayfly::libc_host::boot_info();
    let mut block: Vec<u8> = mayfly::libc_host::args_block().to_vec();
    block.push(0);
    let block = block.leak();
    let mut strings: Vec<*mut c_char> = Vec::new();
    let mut at = 0;
    while at < block.len() - 1 {
        strings.push(block[at..].as_mut_ptr().cast());
        at += block[at..].iter().position(|&b| b == 0).unwrap_or(block.len()) + 1;
    }
    let argc = (info.argc as usize).min(strings.len());
    let envc = (info.envc as usize).min(strings.len() - argc);
    let mut argv: Vec<*mut c_char> = strings[..argc].to_vec();
    argv.push(core::ptr::null_mut());
    let mut envp: Vec<*mut c_char> = strings[argc..argc + envc].to_vec();
    envp.push(core::ptr::null_mut());
    let argv = argv.leak().as_mut_ptr();
    let envp = envp.leak().as_mut_ptr();
    crate::env::init(envp);

    // SAFETY: the linker script brackets `.init_array` with these symbols; each entry is a
    // constructor taking (argc, argv, envp), as glibc calls them.
    unsafe {
        let mut ctor = (&raw const __init_array_start).cast::<InitFn>();
        let end = (&raw const __init_array_end).cast::<InitFn>();
        while ctor < end {
            (*ctor)(argc as c_int, argv, envp);
            ctor = ctor.add(1);
        }
    }
    // SAFETY: rustc's `main` takes C argc/argv (and ignores envp); the arrays are
    // null-terminated and live forever.
    let status = unsafe { main(argc as c_int, argv, envp) };
    crate::process::exit(status)
}
