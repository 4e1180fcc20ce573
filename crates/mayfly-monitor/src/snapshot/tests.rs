use super::*;

fn sample() -> Template {
    let mut regs =
        kvm_regs { rip: 0x10_0040, rsp: 0x3f_ff00, rflags: 0x246 & !0x200, ..Default::default() };
    regs.rax = 7;
    let mut fpu = kvm_fpu { mxcsr: 0x1f80, fcw: 0x37f, ..Default::default() };
    fpu.xmm[3] = [9; 16];
    Template {
        mem_size: 4 << 20,
        image_len: 10,
        image_digest: digest(b"0123456789"),
        tsc: 123_456,
        regs,
        fpu,
        rings: Some((3, 4)),
        argc: 1,
        envc: 0,
        args_len: 6,
    }
}

#[test]
fn headers_round_trip() {
    let t = sample();
    let bytes = t.encode();
    assert_eq!(bytes.len() as u64, HEADER_LEN);
    assert_eq!(Template::decode(&bytes, "t").unwrap(), t);
}

#[test]
fn short_or_foreign_headers_are_refused_without_panic() {
    let bytes = sample().encode();
    for len in [0, 7, 8, 20, 100, 300] {
        assert!(Template::decode(&bytes[..len], "t").is_err(), "{len} bytes accepted");
    }
    let mut other = bytes.clone();
    other[0] = b'X';
    assert!(matches!(Template::decode(&other, "t"), Err(TemplateError::NotATemplate(_))));
    let mut version = bytes.clone();
    version[12] = version[12].wrapping_add(1);
    assert!(matches!(Template::decode(&version, "t"), Err(TemplateError::Version { .. })));
    let mut nic = bytes;
    // The NIC flag follows magic, versions, 4 u64, 18 registers, 24 16-byte registers, 4 u16,
    // 2 u64 and mxcsr.
    let at = 8 + 8 + 32 + 18 * 8 + 24 * 16 + 8 + 16 + 4;
    nic[at] = 2;
    assert!(matches!(Template::decode(&nic, "t"), Err(TemplateError::Corrupt(_))));
}

#[test]
fn digests_tell_images_apart() {
    assert_ne!(digest(b"image a"), digest(b"image b"));
    assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
}
