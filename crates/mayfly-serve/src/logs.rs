//! Each service's recent console output, tagged with the instance that printed it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Lines kept per service.
pub const LOG_LINES: usize = 2000;
/// Longest line kept (longer lines are cut).
const LINE_MAX: usize = 4096;

/// A bounded buffer of log lines, shared by a service's instances.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<VecDeque<String>>>);

impl LogBuffer {
    /// Appends `line` from instance `name`, dropping the oldest line when full.
    pub fn push(&self, name: &str, line: &str) {
        let mut cut = line.len().min(LINE_MAX);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let entry = format!("{name}: {}", line.get(..cut).unwrap_or_default());
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= LOG_LINES {
            lines.pop_front();
        }
        lines.push_back(entry);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().skip(lines.len().saturating_sub(n)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines_tagged() {
        let logs = LogBuffer::default();
        for i in 0..LOG_LINES + 5 {
            logs.push("svc-1", &format!("line {i}"));
        }
        let tail = logs.tail(2);
        assert_eq!(
            tail,
            vec![
                format!("svc-1: line {}", LOG_LINES + 3),
                format!("svc-1: line {}", LOG_LINES + 4)
            ]
        );
        assert_eq!(logs.tail(usize::MAX).len(), LOG_LINES);
        logs.push("x", &"é".repeat(5000));
        assert!(logs.tail(1)[0].len() <= LINE_MAX + 3);
    }
}
