//! `Stats`: the reactor's counters. A leaf: it knows only `CloseReason`.

use std::fmt;

use crate::ids::CloseReason;

/// Counters since the reactor was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections accepted (including those then refused as over capacity).
    pub accepted: u64,
    /// Outbound connections established ([`Control::connect`](crate::Control::connect)).
    pub connected: u64,
    /// Outbound connections that failed or were given up before they
    /// connected (not counted in the closes).
    pub connect_failed: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes read from connections.
    pub bytes_in: u64,
    /// Bytes written to connections.
    pub bytes_out: u64,
    /// Frames decoded and handed to the handler.
    pub frames_in: u64,
    /// Frames the handler sent.
    pub frames_out: u64,
    /// `send` calls made, counting those a full socket refused
    /// (`WouldBlock`): with a peer that stops reading, this grows with the
    /// writable events the poller reports, not with the replies queued.
    pub writes: u64,
    /// Times accept failed for lack of fds (EMFILE/ENFILE).
    pub fd_exhaustion: u64,
    /// Heap bytes held by connection buffers now.
    pub buffered: u64,
    /// The most `buffered` has been.
    pub peak_buffered: u64,
    pub(crate) closed: [u64; CloseReason::COUNT],
}

impl Stats {
    /// Connections closed for `reason` (every `Io` kind counts together).
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        self.closed[reason.index()] += 1;
        self.open = self.open.saturating_sub(1);
    }

    /// A connection refused at accept: counted as closed, never open.
    pub(crate) fn count_refused(&mut self, reason: CloseReason) {
        self.closed[reason.index()] += 1;
    }

    pub(crate) fn account(&mut self, before: usize, after: usize) {
        self.buffered = (self.buffered + after as u64).saturating_sub(before as u64);
        self.peak_buffered = self.peak_buffered.max(self.buffered);
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} open={} bytes_in={} bytes_out={} frames_in={} frames_out={} \
             connected={} connect_failed={} writes={} fd_exhaustion={} peak_buffered={}",
            self.accepted,
            self.open,
            self.bytes_in,
            self.bytes_out,
            self.frames_in,
            self.frames_out,
            self.connected,
            self.connect_failed,
            self.writes,
            self.fd_exhaustion,
            self.peak_buffered,
        )?;

        for reason in CloseReason::ALL {
            let n = self.closed(reason);
            if n > 0 {
                write!(f, " closed[{}]={n}", reason.name())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_what_an_operator_needs_after_an_attack() {
        let mut stats = Stats {
            fd_exhaustion: 3,
            writes: 9,
            ..Stats::default()
        };
        stats.account(0, 4096);
        stats.account(4096, 0);
        stats.count_close(CloseReason::SlowConsumer);
        let line = stats.to_string();
        for part in [
            "fd_exhaustion=3",
            "peak_buffered=4096",
            "writes=9",
            "closed[slow consumer]=1",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
    }
}
