//! Each service's recent console output, tagged with the instance that printed it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Lines kept per service.
pub const LOG_LINES: usize = 2000;
/// Longest line kept: longer lines are split (when captured) or cut (when pushed).
pub const LINE_MAX: usize = 4096;

/// Captures `reader` (an instance's console) into `logs` as instance `name`, line by line. A
/// line longer than [`LINE_MAX`] is split as it is read: a guest that prints gigabytes without
/// a newline costs a buffer of [`LINE_MAX`] bytes, not gigabytes.
pub async fn capture(reader: impl AsyncRead + Unpin, logs: LogBuffer, name: String) {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let push = |line: &mut Vec<u8>| {
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        logs.push(&name, &String::from_utf8_lossy(text));
        line.clear();
    };
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let room = LINE_MAX - line.len();
        let seen = buf.get(..buf.len().min(room)).unwrap_or_default();
        match seen.iter().position(|b| *b == b'\n') {
            Some(newline) => {
                line.extend_from_slice(seen.get(..newline).unwrap_or_default());
                reader.consume(newline + 1);
                push(&mut line);
            }
            None => {
                let taken = seen.len();
                line.extend_from_slice(seen);
                reader.consume(taken);
                if line.len() >= LINE_MAX {
                    push(&mut line);
                }
            }
        }
    }
    if !line.is_empty() {
        push(&mut line);
    }
}

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

    #[tokio::test]
    async fn capture_splits_long_lines_as_it_reads() {
        let logs = LogBuffer::default();
        let mut input = vec![b'x'; LINE_MAX * 2 + 10];
        input.extend_from_slice(b"\nshort\r\nlast");
        capture(&input[..], logs.clone(), "i".into()).await;
        let lines = logs.tail(usize::MAX);
        let x = "x".repeat(LINE_MAX);
        let expected = [x.as_str(), x.as_str(), "xxxxxxxxxx", "short", "last"];
        assert_eq!(lines, expected.map(|l| format!("i: {l}")));
    }

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
