//! The guest console's limits: a total volume past which the guest is stopped, and a rate above
//! which output is dropped (a token bucket of one second's worth, refilled continuously), with a
//! note at most once a second saying how much was dropped.
//!
//! Pure bookkeeping, given the time: the run loop reads the guest's console buffer, asks
//! [`Console::admit`] how much of it to show, and writes that.

use std::time::{Duration, Instant};

/// How often, at most, a note about dropped output is written.
const NOTE_EVERY: Duration = Duration::from_secs(1);

/// The console's limits and what they have let through so far.
#[derive(Debug, Clone)]
pub struct Console {
    /// Most bytes the guest may print in all, if limited.
    limit: Option<u64>,
    /// Bytes it may still print.
    left: u64,
    /// Most bytes per second shown, if limited.
    rate: Option<u64>,
    /// Bytes that may be shown now (at most `rate`).
    tokens: f64,
    /// When `tokens` was last refilled.
    refilled: Instant,
    /// Bytes dropped by the rate limit since the last note.
    dropped: u64,
    /// When the last note was written.
    noted: Option<Instant>,
}

/// What to do with a batch of console output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Bytes to show, from the start of the batch.
    pub show: usize,
    /// The batch went past the volume limit: stop the guest.
    pub over_limit: bool,
}

impl Console {
    /// A console with a volume `limit` and a `rate` (bytes per second), each if set; the rate's
    /// bucket starts full at `now`.
    pub fn new(limit: Option<u64>, rate: Option<u64>, now: Instant) -> Console {
        let rate = rate.filter(|r| *r > 0);
        Console {
            limit,
            left: limit.unwrap_or(u64::MAX),
            rate,
            tokens: rate.unwrap_or(0) as f64,
            refilled: now,
            dropped: 0,
            noted: None,
        }
    }

    /// The volume limit, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Takes a batch of `len` bytes the guest printed at `now`: how many to show (what the
    /// volume limit and the rate allow), and whether the volume limit was passed.
    pub fn admit(&mut self, len: usize, now: Instant) -> Admitted {
        let allowed = usize::try_from(self.left).unwrap_or(usize::MAX).min(len);
        let mut show = allowed;
        if let Some(rate) = self.rate {
            let refill = now.saturating_duration_since(self.refilled).as_secs_f64() * rate as f64;
            self.tokens = (self.tokens + refill).min(rate as f64);
            self.refilled = now;
            // `tokens` is in [0, rate]; float-to-int `as` saturates.
            #[allow(clippy::cast_possible_truncation)]
            let tokens = self.tokens as usize;
            show = allowed.min(tokens);
            self.tokens -= show as f64;
            self.dropped += (allowed - show) as u64;
        }
        self.left = self.left.saturating_sub(len as u64);
        Admitted { show, over_limit: allowed < len }
    }

    /// The note about output the rate limit dropped since the last note, if any is due at
    /// `now` (at most one a second, unless `last`: the guest has stopped).
    pub fn note(&mut self, now: Instant, last: bool) -> Option<String> {
        let due = last || self.noted.is_none_or(|t| now.saturating_duration_since(t) >= NOTE_EVERY);
        if self.dropped == 0 || !due {
            return None;
        }
        let note = format!(
            "\n[mayfly: {} bytes of console output dropped: over {} bytes/s]\n",
            self.dropped,
            self.rate.unwrap_or(0)
        );
        self.dropped = 0;
        self.noted = Some(now);
        Some(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn without_limits_everything_is_shown() {
        let t0 = Instant::now();
        let mut console = Console::new(None, None, t0);
        assert_eq!(console.admit(1 << 20, t0), Admitted { show: 1 << 20, over_limit: false });
        assert_eq!(console.note(t0, true), None);
        // A zero rate is no rate.
        let mut zero = Console::new(None, Some(0), t0);
        assert_eq!(zero.admit(10, t0).show, 10);
    }

    #[test]
    fn the_volume_limit_shows_up_to_it_then_stops_the_guest() {
        let t0 = Instant::now();
        let mut console = Console::new(Some(100), None, t0);
        assert_eq!(console.limit(), Some(100));
        assert_eq!(console.admit(60, t0), Admitted { show: 60, over_limit: false });
        assert_eq!(console.admit(40, t0), Admitted { show: 40, over_limit: false });
        assert_eq!(console.admit(1, t0), Admitted { show: 0, over_limit: true });
        let mut console = Console::new(Some(100), None, t0);
        assert_eq!(console.admit(150, t0), Admitted { show: 100, over_limit: true });
    }

    #[test]
    fn the_rate_drops_the_excess_refills_over_time_and_says_so_once_a_second() {
        let t0 = Instant::now();
        let mut console = Console::new(None, Some(1000), t0);
        // A full bucket: one second's worth.
        assert_eq!(console.admit(1500, t0).show, 1000);
        let note = console.note(t0, false).expect("a note about the 500 dropped bytes");
        assert!(note.contains("500 bytes of console output dropped: over 1000 bytes/s"), "{note}");
        // 100 ms later: 100 bytes of tokens.
        assert_eq!(console.admit(300, t0 + 100 * MS).show, 100);
        assert_eq!(console.note(t0 + 100 * MS, false), None, "at most one note a second");
        // The bucket never holds more than a second's worth, however long the pause.
        assert_eq!(console.admit(5000, t0 + 60_000 * MS).show, 1000);
        let note = console.note(t0 + 60_000 * MS, false).expect("a note, a second later");
        assert!(note.contains("4200 bytes"), "{note}");
        // At the end, what is left is said whatever the time (1 ms refilled 1 byte of 10).
        console.admit(10, t0 + 60_001 * MS);
        assert!(
            console.note(t0 + 60_001 * MS, true).is_some_and(|n| n.contains("\n[mayfly: 9 bytes"))
        );
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut console = Console::new(None, Some(100), t0);
        assert_eq!(console.admit(100, t0).show, 100);
        assert_eq!(console.admit(100, t0 - Duration::from_secs(5)).show, 0);
    }
}
