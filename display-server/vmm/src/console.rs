//! The serial console's log: the newest bytes a guest wrote to COM1, bounded, kept per
//! desktop so admins can read why a guest failed to boot.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The log keeps this much (1 MiB): a Linux boot log with room to spare.
pub const CONSOLE_LOG_LIMIT: usize = 1 << 20;

#[derive(Debug, Default)]
struct Log {
    bytes: VecDeque<u8>,
    total: u64,
}

/// Shared handle to a console log; clones see the same log.
#[derive(Debug, Clone, Default)]
pub struct ConsoleLog(Arc<Mutex<Log>>);

impl ConsoleLog {
    pub fn push(&self, data: &[u8]) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.total += data.len() as u64;
        let data = &data[data.len().saturating_sub(CONSOLE_LOG_LIMIT)..];
        let overflow = (log.bytes.len() + data.len()).saturating_sub(CONSOLE_LOG_LIMIT);
        log.bytes.drain(..overflow);
        log.bytes.extend(data);
    }

    /// The last `max` bytes, as text (invalid UTF-8 replaced).
    pub fn tail(&self, max: usize) -> String {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let skip = log.bytes.len().saturating_sub(max);
        let bytes: Vec<u8> = log.bytes.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Bytes written since the VM was created, including those no longer kept.
    pub fn total(&self) -> u64 {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl std::io::Write for ConsoleLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_bytes() {
        let log = ConsoleLog::default();
        log.push(b"hello ");
        log.push(b"world");
        assert_eq!(log.tail(5), "world");
        let big = vec![b'x'; CONSOLE_LOG_LIMIT + 10];
        log.push(&big);
        log.push(b"end");
        assert_eq!(log.tail(usize::MAX).len(), CONSOLE_LOG_LIMIT);
        assert!(log.tail(usize::MAX).ends_with("xend"));
        assert_eq!(log.total(), 11 + CONSOLE_LOG_LIMIT as u64 + 13);
    }
}
