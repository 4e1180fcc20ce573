//! The unwinder interface the precompiled std refers to. Std programs are built with
//! `panic = "abort"`, so nothing unwinds; std's backtrace walker finds no frames
//! (`_Unwind_Backtrace` ends at once). `_Unwind_Resume` comes from the library OS.

use core::ffi::{c_int, c_void};

const URC_END_OF_STACK: c_int = 5;

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Backtrace(_trace: usize, _data: *mut c_void) -> c_int {
    URC_END_OF_STACK
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetIP(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetIPInfo(_context: *mut c_void, before: *mut c_int) -> usize {
    if !before.is_null() {
        // SAFETY: the caller passes a writable flag.
        unsafe { *before = 0 };
    }
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetCFA(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetDataRelBase(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetTextRelBase(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetLanguageSpecificData(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_GetRegionStart(_context: *mut c_void) -> usize {
    0
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_SetGR(_context: *mut c_void, _index: c_int, _value: usize) {}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_SetIP(_context: *mut c_void, _value: usize) {}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_DeleteException(_exception: *mut c_void) {}

/// Starting to unwind is not possible (`panic = "abort"`): report end of stack.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_RaiseException(_exception: *mut c_void) -> c_int {
    URC_END_OF_STACK
}

#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_FindEnclosingFunction(_pc: *mut c_void) -> *mut c_void {
    core::ptr::null_mut()
}
