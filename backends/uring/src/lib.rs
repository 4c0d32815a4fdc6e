//! The io_uring backend of evmux: `UringPoller`, Linux 5.13 and later.
//!
//! Readiness comes from `IORING_OP_POLL_ADD` requests, one per registered
//! fd, and their completions. `register`, `modify` and `deregister` only
//! queue entries in the submission ring; the next `wait` submits them and
//! waits in the same `io_uring_enter`, so a loop turn costs one system call
//! however many interest changes it made (a full submission ring, 1024
//! entries, is submitted on the spot). `wait` costs O(ready fds); there is
//! no fd limit beyond the process's own.
//!
//! # How each trigger is obtained
//!
//! - [`Trigger::Level`]: a oneshot poll, re-armed after each reported event
//!   and submitted with the next `wait`. The kernel checks readiness when a
//!   poll is armed, so an fd that is still ready completes at once and is
//!   reported again.
//! - [`Trigger::Edge`]: a multishot poll (`IORING_POLL_ADD_MULTI`), which
//!   posts a completion on arming if the fd is ready and then on every
//!   wake-up of the file, as `EPOLLET` does. Completions that pile up
//!   between two waits make one event.
//! - [`Trigger::Oneshot`]: a oneshot poll that is not re-armed until
//!   [`modify`](Poller::modify).
//!
//! io_uring always watches for `POLLRDHUP`, whatever was asked. Like epoll,
//! this backend reports a half-close only with readable interest; when that
//! is all a level or oneshot poll saw, it waits on a multishot poll for the
//! next wake-up instead of re-arming into a busy loop.
//!
//! # Bookkeeping
//!
//! A table indexed by fd number holds each registration's token, interest
//! and trigger, and a generation that changes with every poll request armed
//! for that fd; the request's `user_data` carries fd and generation. A
//! completion whose generation is not the current one is dropped, so after
//! `deregister` or `modify` nothing stale is reported, even a completion
//! already sitting in the completion ring. Timeouts count nanoseconds
//! (`IORING_ENTER_EXT_ARG`). A full completion ring loses nothing: the
//! kernel keeps the overflow (`IORING_FEAT_NODROP`) and `wait` flushes it.
//!
//! # Closing a registered fd
//!
//! Deregister before closing (the poll request is cancelled when the next
//! `wait` submits the removal). A poll request holds the open file, not the
//! fd number, so if an fd is closed while registered:
//!
//! - a poll that is re-armed later (level) or was not yet submitted fails
//!   with `EBADF`: the poller reports one [`Readiness::ERROR`] event for the
//!   stale token and forgets the fd, as the poll backend does;
//! - a poll in flight keeps the file open until its next completion, or
//!   until a new fd with the same number is registered: `register` then
//!   asks the kernel (`IORING_REGISTER_SYNC_CANCEL` by fd, Linux 6.0+)
//!   whether the request watches the file that is open now. If not, the old
//!   request is cancelled, which releases the file, the stale token gets one
//!   `ERROR` event and the new fd is registered. Without that call, or for
//!   a disarmed oneshot fd, the old entry stays and `register` gives
//!   `AlreadyExists`, as on poll.
//!
//! # Examples
//!
//! ```
//! # #[cfg(target_os = "linux")]
//! # fn main() -> std::io::Result<()> {
//! use std::io::Write;
//! use std::os::unix::net::UnixStream;
//! use std::time::Duration;
//! use evmux_core::{Events, Interest, Poller, Token, Trigger};
//! use evmux_uring::UringPoller;
//!
//! let (mut ours, theirs) = UnixStream::pair()?;
//! theirs.set_nonblocking(true)?;
//!
//! let mut poller = match UringPoller::new() {
//!     Ok(poller) => poller,
//!     // ENOSYS, EPERM from seccomp, or the io_uring_disabled sysctl.
//!     Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(()),
//!     Err(e) => return Err(e),
//! };
//! poller.register(&theirs, Token(7), Interest::READABLE, Trigger::Edge)?;
//! ours.write_all(b"ping")?;
//!
//! let mut events = Events::with_capacity(64);
//! poller.wait(&mut events, Some(Duration::from_secs(5)))?;
//! assert!(events.iter().any(|e| e.token() == Token(7) && e.is_readable()));
//!
//! poller.deregister(&theirs)?;
//! # Ok(())
//! # }
//! # #[cfg(not(target_os = "linux"))]
//! # fn main() {}
//! ```
#![cfg(target_os = "linux")]

use std::fmt;
use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use evmux_core::{
    already_registered, check_token, check_trigger, clamp_timeout, not_registered, waker_exists,
    Event, Events, Interest, Poller, Readiness, Token, Trigger, Waker, WakerSource,
};
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, EnterFlags, IoUring};

/// Submission ring entries: how many interest changes one turn can queue
/// before `register` has to submit on the spot.
const SQ_ENTRIES: u32 = 1024;
/// Completion ring entries; the kernel keeps any overflow.
const CQ_ENTRIES: u32 = 8 * SQ_ENTRIES;
/// Completions copied out of the ring at a time.
const CQE_BATCH: usize = 256;

/// `user_data` of the entries whose completions mean nothing (removals).
const IGNORE: u64 = u64::MAX;
/// `user_data` of the waker's poll: an fd half no fd can have.
const WAKER: u64 = u32::MAX as u64;

/// What is known about one registered fd.
#[derive(Clone, Copy, Debug)]
struct Reg {
    token: Token,
    interest: Interest,
    trigger: Trigger,
    /// A poll request with the slot's current generation is queued or in
    /// flight.
    armed: bool,
    /// That request is multishot: edge, or a muted level or oneshot fd.
    multishot: bool,
    /// The poller's submit count when that request was queued: while the
    /// two are equal it has not reached the kernel.
    queued_at: u64,
    /// Readiness reaped but not reported yet.
    pending: Readiness,
    /// The fd is in `UringPoller::ready` already.
    listed: bool,
}

/// One fd number's entry in the table.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Bumped for every poll request armed for this number, and kept when
    /// the fd is deregistered, so a later registration never matches an
    /// earlier request.
    gen: u32,
    reg: Option<Reg>,
}

/// A [`Poller`] over io_uring poll requests.
///
/// See the [crate docs](crate) for how each trigger is obtained, what a
/// turn costs and what happens to an fd closed while registered.
pub struct UringPoller {
    ring: IoUring,
    /// Indexed by fd number.
    slots: Vec<Slot>,
    /// fds with pending readiness, in the order it arrived.
    ready: Vec<RawFd>,
    /// Tokens of fds found closed: one `ERROR` event each.
    orphans: Vec<Token>,
    /// Scratch for copying completions out of the ring.
    cqes: Box<[MaybeUninit<cqueue::Entry>]>,
    waker: Option<WakerSource>,
    /// The waker's poll completed; drain and report it.
    woken: bool,
    /// `io_uring_enter` calls so far.
    submits: u64,
    /// Inside `reap`: entries go to `deferred`, not the ring.
    reaping: bool,
    /// Entries queued while reaping, pushed when it is done.
    deferred: Vec<squeue::Entry>,
    /// `IOSQE_CQE_SKIP_SUCCESS` where the kernel has it (5.17+): removals
    /// that find their request post nothing.
    skip_success: squeue::Flags,
    /// The kernel has `IORING_REGISTER_SYNC_CANCEL` (Linux 6.0+), as far
    /// as we know.
    sync_cancel: bool,
}

impl fmt::Debug for UringPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registered = self.slots.iter().filter(|s| s.reg.is_some()).count();
        f.debug_struct("UringPoller")
            .field("sq_entries", &self.ring.params().sq_entries())
            .field("cq_entries", &self.ring.params().cq_entries())
            .field("registered", &registered)
            .field("waker", &self.waker)
            .finish()
    }
}

impl Poller for UringPoller {
    const NAME: &'static str = "uring";

    /// Sets up a ring of 1024 submission and 8192 completion entries.
    ///
    /// # Errors
    ///
    /// `ErrorKind::Unsupported`, with the cause in the message, when
    /// io_uring cannot be used: the kernel lacks it (`ENOSYS`) or lacks what
    /// this backend needs (multishot poll and `IORING_ENTER_EXT_ARG`, Linux
    /// 5.13), or it is refused (`EPERM`: the `kernel.io_uring_disabled`
    /// sysctl, a seccomp filter or container policy). Otherwise the error of
    /// `io_uring_setup`, for example `EMFILE` or `ENOMEM`.
    fn new() -> io::Result<Self> {
        UringPoller::with_entries(SQ_ENTRIES, CQ_ENTRIES)
    }

    fn supports_trigger(trigger: Trigger) -> bool {
        matches!(trigger, Trigger::Level | Trigger::Edge | Trigger::Oneshot)
    }

    fn fd_capacity() -> Option<usize> {
        None
    }

    /// The wait's `timespec` counts nanoseconds.
    fn timeout_resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn register<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        check_trigger::<UringPoller>(trigger)?;
        let fd = fd.as_fd().as_raw_fd();
        let index = usize::try_from(fd).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("uring register: fd {fd} is negative"),
            )
        })?;
        if index >= self.slots.len() {
            self.slots.resize(index + 1, Slot::default());
        }
        if self.slots[index].reg.is_some() {
            if self.watches_current_file(fd)? {
                return Err(already_registered(fd));
            }
            self.forget_stale(fd)?;
        }
        self.slots[index].reg = Some(Reg {
            token,
            interest,
            trigger,
            armed: false,
            multishot: false,
            queued_at: 0,
            pending: Readiness::empty(),
            listed: false,
        });
        self.arm(fd, trigger == Trigger::Edge)
    }

    fn modify<F: AsFd + ?Sized>(
        &mut self,
        fd: &F,
        token: Token,
        interest: Interest,
        trigger: Trigger,
    ) -> io::Result<()> {
        check_token(token)?;
        check_trigger::<UringPoller>(trigger)?;
        let fd = fd.as_fd().as_raw_fd();
        if self.reg(fd).is_none() {
            return Err(not_registered(fd));
        }
        self.disarm(fd)?;
        if let Some(reg) = self.reg_mut(fd) {
            reg.token = token;
            reg.interest = interest;
            reg.trigger = trigger;
            // Reaped for the old registration; the new poll reports afresh.
            reg.pending = Readiness::empty();
        }
        self.arm(fd, trigger == Trigger::Edge)
    }

    fn deregister<F: AsFd + ?Sized>(&mut self, fd: &F) -> io::Result<()> {
        let fd = fd.as_fd().as_raw_fd();
        if self.reg(fd).is_none() {
            return Err(not_registered(fd));
        }
        self.disarm(fd)?;
        self.slots[fd as usize].reg = None;
        Ok(())
    }

    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let timeout = clamp_timeout(timeout);
        // Taken only for a finite, non-zero timeout, which a pass that
        // reports nothing may have to split.
        let start = timeout.filter(|t| !t.is_zero()).map(|_| Instant::now());
        loop {
            let left = match (timeout, start) {
                (Some(t), Some(s)) => Some(t.saturating_sub(s.elapsed())),
                (t, _) => t,
            };
            // Something reaped already, or left in the rings: do not block.
            let busy = !self.ready.is_empty()
                || !self.orphans.is_empty()
                || self.woken
                || !self.ring.completion().is_empty()
                || self.ring.submission().cq_overflow();
            let pass = if busy { Some(Duration::ZERO) } else { left };
            self.flush_deferred()?;
            let ended = self.enter(pass)?;
            self.reap()?;
            self.flush_deferred()?;
            self.report(events)?;
            // A pass can end on completions that report nothing (a request
            // cancelled by modify or deregister, a re-arm to make): go on
            // waiting rather than return early, unless the time is up or a
            // signal came.
            if !events.is_empty() || ended || left == Some(Duration::ZERO) {
                return Ok(());
            }
        }
    }

    fn waker(&mut self, token: Token) -> io::Result<Waker> {
        if self.waker.is_some() {
            return Err(waker_exists());
        }
        let (source, waker) = WakerSource::new(token)?;
        let fd = source.fd().as_raw_fd();
        self.waker = Some(source);
        self.arm_waker(fd)?;
        Ok(waker)
    }
}

impl UringPoller {
    /// A poller on a ring of `sq` submission and `cq` completion entries.
    fn with_entries(sq: u32, cq: u32) -> io::Result<UringPoller> {
        let ring = setup(sq, cq)?;
        let params = ring.params();
        if !(params.is_feature_ext_arg() && params.is_feature_nodrop()) {
            return Err(unsupported("io_uring_setup: the kernel lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP; the uring backend needs Linux 5.13+"));
        }
        // Resource tagging came with multishot poll, in Linux 5.13.
        if !params.is_feature_resource_tagging() {
            return Err(unsupported(
                "io_uring_setup: the kernel lacks multishot poll; the uring backend needs Linux 5.13+",
            ));
        }
        let skip_success = if params.is_feature_skip_cqe_on_success() {
            squeue::Flags::SKIP_SUCCESS
        } else {
            squeue::Flags::empty()
        };
        Ok(UringPoller {
            skip_success,
            ring,
            slots: Vec::new(),
            ready: Vec::new(),
            orphans: Vec::new(),
            cqes: (0..CQE_BATCH).map(|_| MaybeUninit::uninit()).collect(),
            waker: None,
            woken: false,
            submits: 0,
            reaping: false,
            deferred: Vec::new(),
            sync_cancel: true,
        })
    }

    fn reg(&self, fd: RawFd) -> Option<&Reg> {
        let index = usize::try_from(fd).ok()?;
        self.slots.get(index)?.reg.as_ref()
    }

    fn reg_mut(&mut self, fd: RawFd) -> Option<&mut Reg> {
        let index = usize::try_from(fd).ok()?;
        self.slots.get_mut(index)?.reg.as_mut()
    }

    /// Queues one entry, submitting what is queued first if the ring is
    /// full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        if self.reaping {
            // Submitting now could post completions into the ring being
            // emptied (a level fd that is still ready completes on arming)
            // and keep `reap` going; `flush_deferred` queues them after.
            self.deferred.push(entry.clone());
            return Ok(());
        }
        loop {
            // SAFETY: every entry this poller queues is a poll add or a
            // poll remove, neither of which points at memory: the kernel
            // reads only the entry, which `push` copies into the ring.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            let queued = self.ring.submission().len();
            self.enter(Some(Duration::ZERO))?;
            if self.ring.submission().len() == queued {
                return Err(io::Error::other(
                    "uring: the submission ring is full and io_uring_enter took none of it",
                ));
            }
            // Reaped into the table now, to be reported by the next wait:
            // a caller that registers many fds without waiting must not
            // grow the kernel's overflow list without bound. (Re-arms this
            // makes wait in `deferred` for the next wait.)
            self.reap()?;
        }
    }

    /// Queues a new poll request for registered `fd` under a new generation.
    fn arm(&mut self, fd: RawFd, multishot: bool) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        let Some(reg) = slot.reg.as_mut() else {
            return Ok(());
        };
        slot.gen = slot.gen.wrapping_add(1);
        let entry = opcode::PollAdd::new(Fd(fd), interest_to_poll(reg.interest))
            .multi(multishot)
            .build()
            .user_data(user_data(fd, slot.gen));
        reg.armed = true;
        reg.multishot = multishot;
        self.push(&entry)?;
        // After the push, which may have had to submit first.
        let submits = self.submits;
        if let Some(reg) = self.reg_mut(fd) {
            reg.queued_at = submits;
        }
        Ok(())
    }

    /// Queues the removal of `fd`'s poll request, if it has one, and moves
    /// to a new generation so nothing the old request posts is reported.
    fn disarm(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = &mut self.slots[fd as usize];
        let old = user_data(fd, slot.gen);
        slot.gen = slot.gen.wrapping_add(1);
        let Some(reg) = slot.reg.as_mut() else {
            return Ok(());
        };
        if !reg.armed {
            return Ok(());
        }
        reg.armed = false;
        // Queued after the request itself, so it finds it even if neither
        // has been submitted yet.
        let remove = opcode::PollRemove::new(old)
            .build()
            .flags(self.skip_success)
            .user_data(IGNORE);
        self.push(&remove)
    }

    fn arm_waker(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(WAKER);
        self.push(&entry)
    }

    /// One `io_uring_enter`: submits what is queued and waits up to
    /// `timeout` for a completion (`None`: no limit; zero: no wait, but
    /// completions due are still posted and any overflow flushed).
    ///
    /// Returns whether the wait ended by its timeout or a signal.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<bool> {
        let to_submit = self.ring.submission().len() as u32;
        let timeout = clamp_timeout(timeout);
        let ts = timeout.filter(|d| !d.is_zero()).map(Timespec::from);
        let min_complete = u32::from(timeout != Some(Duration::ZERO));
        let args = match &ts {
            Some(ts) => SubmitArgs::new().timespec(ts),
            None => SubmitArgs::new(),
        };
        let flags = (EnterFlags::GETEVENTS | EnterFlags::EXT_ARG).bits();
        self.submits += 1;
        // SAFETY: `to_submit` entries are queued (the submission handle
        // above published them on drop) and none points at memory; `args` is
        // an `io_uring_getevents_arg`, as EXT_ARG tells the kernel, whose
        // `ts` is null or points at `ts`, both alive through the call.
        let ret = unsafe {
            self.ring
                .submitter()
                .enter(to_submit, min_complete, flags, Some(&args))
        };
        match ret {
            Ok(_) => Ok(false),
            Err(e) => match e.raw_os_error() {
                // The timeout, or a signal (the shared EINTR policy).
                Some(libc::ETIME | libc::EINTR) => Ok(true),
                // A completion ring too full to flush the overflow into:
                // `reap` makes room, and the next pass carries on.
                Some(libc::EBUSY | libc::EAGAIN) => Ok(false),
                _ => Err(io::Error::new(
                    e.kind(),
                    format!("uring wait: io_uring_enter: {e}"),
                )),
            },
        }
    }

    /// Takes every completion out of the ring, flushing the kernel's
    /// overflow list into it as often as needed, and notes what they say.
    fn reap(&mut self) -> io::Result<()> {
        let mut cqes = mem::take(&mut self.cqes);
        self.reaping = true;
        let result = loop {
            let batch = {
                let mut cq = self.ring.completion();
                cq.fill(&mut cqes)
            };
            if batch.is_empty() {
                if !self.ring.submission().cq_overflow() {
                    break Ok(());
                }
                // IORING_SQ_CQ_OVERFLOW: the kernel holds completions the
                // full ring had no room for; a GETEVENTS enter moves them in.
                if let Err(e) = self.enter(Some(Duration::ZERO)) {
                    break Err(e);
                }
                continue;
            }
            if let Err(e) = batch
                .iter()
                .try_for_each(|c| self.complete(c.user_data(), c.result(), c.flags()))
            {
                break Err(e);
            }
        };
        self.reaping = false;
        self.cqes = cqes;
        result
    }

    /// Queues the entries `reap` deferred.
    fn flush_deferred(&mut self) -> io::Result<()> {
        let mut pending = mem::take(&mut self.deferred);
        let pushed = pending.iter().try_for_each(|entry| self.push(entry));
        pending.clear();
        // Whatever a reap inside `push` deferred meanwhile waits its turn.
        pending.append(&mut self.deferred);
        self.deferred = pending;
        pushed
    }

    /// Notes one completion.
    fn complete(&mut self, data: u64, res: i32, flags: u32) -> io::Result<()> {
        if data == IGNORE {
            return Ok(());
        }
        if data == WAKER {
            match self.waker.as_ref().map(|w| w.fd().as_raw_fd()) {
                // Cancelled (the thread that submitted it exited): re-arm.
                Some(fd) if res == -libc::ECANCELED => return self.arm_waker(fd),
                Some(_) => self.woken = true,
                None => {}
            }
            return Ok(());
        }
        let (fd, gen) = split_user_data(data);
        match self.slots.get(fd as usize) {
            Some(slot) if slot.gen == gen && slot.reg.is_some() => {}
            // A request since removed or replaced: nothing to say.
            _ => return Ok(()),
        }
        let more = cqueue::more(flags);
        let Some(reg) = self.reg_mut(fd) else {
            return Ok(());
        };
        if !more {
            reg.armed = false;
        }
        let reg = *reg;
        if res < 0 {
            return self.failed(fd, reg, -res);
        }
        let readiness = poll_to_readiness(res as u32, reg.interest);
        if readiness.is_empty() {
            // Only POLLRDHUP, which io_uring always watches, without
            // readable interest: a oneshot re-arm would complete at once,
            // forever. Wait for the next wake-up instead.
            if !reg.armed {
                self.arm(fd, true)?;
            }
            return Ok(());
        }
        self.note(fd, readiness);
        match reg.trigger {
            Trigger::Edge if !reg.armed => self.arm(fd, true),
            Trigger::Edge => Ok(()),
            Trigger::Oneshot => self.disarm(fd),
            _ => {
                if reg.multishot {
                    // Muted after a half-close; level again now.
                    self.disarm(fd)?;
                }
                self.arm(fd, false)
            }
        }
    }

    /// A poll request for registered `fd` failed with `errno`.
    fn failed(&mut self, fd: RawFd, reg: Reg, errno: i32) -> io::Result<()> {
        match errno {
            // Cancelled without our asking (the thread that submitted it
            // exited): the fd never fired, so arm it again.
            libc::ECANCELED => self.arm(fd, reg.multishot),
            // Closed before the request reached the kernel.
            libc::EBADF => {
                self.orphans.push(reg.token);
                let slot = &mut self.slots[fd as usize];
                slot.reg = None;
                slot.gen = slot.gen.wrapping_add(1);
                Ok(())
            }
            // Anything else: say so once; `modify` re-arms.
            _ => {
                self.note(fd, Readiness::ERROR);
                self.disarm(fd)
            }
        }
    }

    /// Adds `readiness` to what `fd` will report.
    fn note(&mut self, fd: RawFd, readiness: Readiness) {
        let Some(reg) = self.reg_mut(fd) else {
            return;
        };
        reg.pending |= readiness;
        if !reg.listed {
            reg.listed = true;
            self.ready.push(fd);
        }
    }

    /// Moves what was reaped into `events`: one event per fd.
    fn report(&mut self, events: &mut Events) -> io::Result<()> {
        for token in self.orphans.drain(..) {
            events.push(Event::new(token, Readiness::ERROR));
        }
        for i in 0..self.ready.len() {
            let fd = self.ready[i];
            let Some(reg) = self.reg_mut(fd) else {
                continue;
            };
            if !reg.pending.is_empty() {
                events.push(Event::new(reg.token, reg.pending));
            }
            reg.pending = Readiness::empty();
            reg.listed = false;
        }
        self.ready.clear();
        if mem::take(&mut self.woken) {
            if let Some(source) = &self.waker {
                // Drained before the re-arm reaches the kernel with the
                // next wait, so old wakes do not fire it again.
                source.drain();
                events.push(Event::new(source.token(), Readiness::READABLE));
                let fd = source.fd().as_raw_fd();
                self.arm_waker(fd)?;
            }
        }
        Ok(())
    }

    /// Does `fd`'s registration still watch the file open under that
    /// number now? `false` only when the kernel says its poll request is on
    /// another file, which means the fd was closed without deregistering.
    fn watches_current_file(&mut self, fd: RawFd) -> io::Result<bool> {
        let Some(reg) = self.reg(fd).copied() else {
            return Ok(false);
        };
        // A disarmed fd has no request to ask about; a queued one will
        // look the number up when it is submitted.
        if !self.sync_cancel || !reg.armed || reg.queued_at == self.submits {
            return Ok(true);
        }
        // A request that completed can no longer be cancelled: take its
        // completion first (and get any re-arm to the kernel).
        self.flush_deferred()?;
        self.enter(Some(Duration::ZERO))?;
        self.reap()?;
        self.flush_deferred()?;
        let gen = self.slots[fd as usize].gen;
        match self.reg(fd) {
            None => return Ok(false),
            Some(r) if !r.armed || r.queued_at == self.submits => return Ok(true),
            Some(_) => {}
        }
        // One request watching the file open under `fd` now, if any. (Not
        // `all()`: then the kernel answers 0 for none, which the crate
        // hides behind `Ok`.)
        let by_fd = CancelBuilder::fd(Fd(fd));
        let timeout = Some(Timespec::new().sec(1));
        match self.ring.submitter().register_sync_cancel(timeout, by_fd) {
            // Ours (or a dup's) was on this very file. Its -ECANCELED
            // completion re-arms it with the next wait.
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // Unless it completed in the meantime.
                self.enter(Some(Duration::ZERO))?;
                self.reap()?;
                Ok(self.slots[fd as usize].gen != gen)
            }
            // Before Linux 6.0: no way to ask.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.sync_cancel = false;
                Ok(true)
            }
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("uring register: sync cancel of fd {fd}: {e}"),
            )),
        }
    }

    /// Drops the registration of an fd that was closed while registered:
    /// its request is cancelled (releasing the old file) and its token gets
    /// one `ERROR` event.
    fn forget_stale(&mut self, fd: RawFd) -> io::Result<()> {
        let Some(token) = self.reg(fd).map(|r| r.token) else {
            return Ok(());
        };
        self.disarm(fd)?;
        self.slots[fd as usize].reg = None;
        self.orphans.push(token);
        Ok(())
    }
}

/// Sets up the ring, with the newer flags where the kernel has them.
fn setup(sq: u32, cq: u32) -> io::Result<IoUring> {
    let modern = IoUring::builder()
        .setup_cqsize(cq)
        .setup_clamp()
        // Linux 5.18-5.19: keep submitting past a failed entry; run
        // completions when we enter the kernel, without interrupting us.
        .setup_submit_all()
        .setup_coop_taskrun()
        .build(sq);
    match modern {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            IoUring::builder().setup_cqsize(cq).setup_clamp().build(sq)
        }
        other => other,
    }
    .map_err(setup_error)
}

/// `io_uring_setup`'s error, as `Unsupported` with the cause named when
/// io_uring cannot be used here.
fn setup_error(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => unsupported(
            "io_uring_setup: not implemented by this kernel (ENOSYS); the uring backend needs Linux 5.13+",
        ),
        Some(libc::EPERM) => unsupported(match io_uring_disabled() {
            Some(2) => "io_uring_setup: refused (EPERM): io_uring is disabled by the kernel.io_uring_disabled sysctl (2)",
            Some(1) => "io_uring_setup: refused (EPERM): kernel.io_uring_disabled is 1, so only members of kernel.io_uring_group may use io_uring",
            _ => "io_uring_setup: refused (EPERM) by a seccomp filter or container policy",
        }),
        _ => io::Error::new(e.kind(), format!("uring new: io_uring_setup: {e}")),
    }
}

/// `kernel.io_uring_disabled` (Linux 6.6+), if the kernel has it.
fn io_uring_disabled() -> Option<u8> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    text.trim().parse().ok()
}

fn unsupported(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, message)
}

/// The `user_data` of `fd`'s poll request of generation `gen`.
fn user_data(fd: RawFd, gen: u32) -> u64 {
    // Registered fds are non-negative, so the low half is never u32::MAX,
    // the waker's.
    (u64::from(gen) << 32) | u64::from(fd as u32)
}

/// The fd and generation in a poll request's `user_data`.
fn split_user_data(data: u64) -> (RawFd, u32) {
    (data as u32 as RawFd, (data >> 32) as u32)
}

/// The poll mask for `interest`; errors and hang-ups (and `POLLRDHUP`) are
/// watched whatever it is.
fn interest_to_poll(interest: Interest) -> u32 {
    let mut mask = 0;
    if interest.is_readable() {
        mask |= libc::POLLIN | libc::POLLRDHUP;
    }
    if interest.is_writable() {
        mask |= libc::POLLOUT;
    }
    mask as u32
}

/// The readiness for a completed poll's mask, as the poll backend reads
/// it: READABLE and WRITABLE (and READ_CLOSED) only where asked for, and
/// READABLE along with a hang-up so the caller's read sees EOF.
fn poll_to_readiness(mask: u32, interest: Interest) -> Readiness {
    let has = |bit: libc::c_short| mask & bit as u32 != 0;
    let mut r = Readiness::empty();
    if has(libc::POLLIN) {
        r |= Readiness::READABLE;
    }
    if has(libc::POLLOUT) {
        r |= Readiness::WRITABLE;
    }
    if has(libc::POLLERR) {
        r |= Readiness::ERROR;
    }
    if has(libc::POLLHUP) {
        r |= Readiness::HUP | Readiness::READABLE;
    }
    if has(libc::POLLRDHUP) {
        r |= Readiness::READ_CLOSED | Readiness::READABLE;
    }
    if !interest.is_readable() {
        r.remove(Readiness::READABLE | Readiness::READ_CLOSED);
    }
    if !interest.is_writable() {
        r.remove(Readiness::WRITABLE);
    }
    r
}

#[cfg(test)]
mod tests;
