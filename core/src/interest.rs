//! `Interest` and `Trigger`: what to watch for, and how to be told.

bitflags::bitflags! {
    /// The readiness a caller asks to be told about.
    ///
    /// An empty interest is allowed and means "keep the fd registered but
    /// report nothing except errors and hang-ups", which the kernel reports
    /// whatever was asked (epoll always does; select and poll follow suit).
    /// The reactor uses it to pause a connection without deregistering it.
    ///
    /// # Examples
    ///
    /// ```
    /// use evmux_core::Interest;
    ///
    /// let both = Interest::READABLE | Interest::WRITABLE;
    /// assert!(both.is_readable() && both.is_writable());
    /// assert!(!Interest::empty().is_readable());
    /// ```
    #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
    pub struct Interest: u8 {
        /// Report when a read would not block (data, EOF or a pending
        /// connection on a listener).
        const READABLE = 0b01;
        /// Report when a write would not block (room in the send buffer).
        const WRITABLE = 0b10;
    }
}

impl Interest {
    /// True if readable readiness is asked for.
    pub fn is_readable(self) -> bool {
        self.contains(Interest::READABLE)
    }

    /// True if writable readiness is asked for.
    pub fn is_writable(self) -> bool {
        self.contains(Interest::WRITABLE)
    }
}

/// How readiness is reported over time.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Trigger {
    /// Reported on every `wait` while the condition holds. The caller may
    /// read as little as it likes; the next `wait` reports the fd again.
    Level,
    /// Reported once per new arrival (epoll's `EPOLLET`). The caller must
    /// read or write until the call returns `WouldBlock` (or a read comes
    /// back short), or it may never hear about the fd again. Only the epoll
    /// and uring backends support it; the others refuse it with
    /// `ErrorKind::Unsupported`.
    Edge,
    /// Reported once, then silent until [`modify`](crate::Poller::modify)
    /// re-arms the fd. The fd stays registered while disarmed: re-arm it with
    /// `modify`, never with a second `register`.
    Oneshot,
}

impl std::fmt::Display for Trigger {
    /// `level`, `edge` or `oneshot`, as logs and the example servers'
    /// flags spell them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Level => "level",
            Trigger::Edge => "edge",
            Trigger::Oneshot => "oneshot",
        })
    }
}
