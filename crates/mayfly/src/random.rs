//! Entropy: a ChaCha20 generator seeded from 32 bytes of host entropy given at boot.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use spinning_top::Spinlock;

static RNG: Spinlock<Option<ChaCha20Rng>> = Spinlock::new(None);

/// Fills `buf` with cryptographically strong random bytes.
pub fn fill(buf: &mut [u8]) {
    let mut rng = RNG.lock();
    rng.get_or_insert_with(|| ChaCha20Rng::from_seed(crate::platform::boot_info().entropy))
        .fill_bytes(buf);
}

/// A random `u64`.
pub fn u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Replaces the generator's state with one seeded from `seed` (a clone's own entropy).
pub(crate) fn reseed(seed: [u8; 32]) {
    *RNG.lock() = Some(ChaCha20Rng::from_seed(seed));
}
