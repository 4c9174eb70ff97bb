//! The epoll backend: a thin, safe face over `epoll(7)` and `eventfd(2)`.
//!
//! Level-triggered: a connection that still has bytes to read after one read is reported
//! again on the next wait, so one busy connection cannot starve the others on its shard.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Readiness the loop asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    /// Wake when readable (or the peer hung up).
    pub read: bool,
    /// Wake when writable.
    pub write: bool,
}

/// One readiness report.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// Readable, or the peer hung up, or an error is pending.
    pub readable: bool,
    /// Writable.
    pub writable: bool,
}

/// An epoll instance.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    /// A new instance reporting up to `batch` events per wait.
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes flags only; a non-negative result is a new fd we own.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: fd was just returned by epoll_create1 and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; batch.max(1)],
        })
    }

    /// Starts watching `fd` for `interest`, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, interest)
    }

    /// Changes what `fd` is watched for.
    pub fn modify(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    /// Stops watching `fd`.
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer; both fds are valid.
        let rc = unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        // Hang-up is asked for only with read interest: level-triggered, a peer's FIN would
        // otherwise be reported on every wait while the connection is not being read.
        let mut flags = 0u32;
        if interest.read {
            flags |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if interest.write {
            flags |= libc::EPOLLOUT as u32;
        }
        let mut event = libc::epoll_event {
            events: flags,
            u64: token,
        };
        // SAFETY: event is a valid epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for readiness and calls `on_event` for each report.
    pub fn wait(&mut self, timeout: Duration, mut on_event: impl FnMut(Event)) -> io::Result<()> {
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the buffer holds `events.len()` entries, the count passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(error)
            };
        }
        for event in &self.events[..n as usize] {
            let flags = event.events;
            let hangup = (libc::EPOLLHUP | libc::EPOLLRDHUP | libc::EPOLLERR) as u32;
            on_event(Event {
                token: event.u64,
                readable: flags & (libc::EPOLLIN as u32 | hangup) != 0,
                writable: flags & libc::EPOLLOUT as u32 != 0,
            });
        }
        Ok(())
    }
}

/// An eventfd used to wake a shard from another thread, with a flag that says new data was
/// committed to the log (so waiting fetches are worth another look).
///
/// Wake-ups are coalesced: once woken, the eventfd is written again only after the shard has
/// taken the wake-up ([`Waker::reset`]), so a commit that completes a hundred of a shard's
/// appends costs the writer thread one `write(2)`, not a hundred.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    data: std::sync::atomic::AtomicBool,
    /// A wake-up was written and the shard has not taken it yet.
    pending: std::sync::atomic::AtomicBool,
}

impl Waker {
    /// A new, non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes an initial value and flags; a non-negative result is ours.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: fd was just returned by eventfd and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            data: std::sync::atomic::AtomicBool::new(false),
            pending: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The fd to register for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Wakes the waiting shard, unless a wake-up it has not taken yet is pending: whatever
    /// the caller published before this call is seen by the shard's next look, which that
    /// wake-up (or this one) brings.
    pub fn wake(&self) {
        if self.pending.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN)
        // already means "woken", so the result is not needed.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Says new data was committed, and wakes the shard.
    pub fn notify_data(&self) {
        self.data.store(true, std::sync::atomic::Ordering::Release);
        self.wake();
    }

    /// True (once) if new data was committed since the last call.
    pub fn take_data(&self) -> bool {
        self.data.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Takes pending wake-ups. The shard then looks at everything it is woken for (its inbox,
    /// [`Waker::take_data`]): a wake after this call writes the eventfd again.
    pub fn reset(&self) {
        self.reset_around(|| {});
    }

    /// [`Waker::reset`], running `between` between its two steps (tests put a wake there).
    fn reset_around(&self, between: impl FnOnce()) {
        // The eventfd is read first and the flag cleared after. The other order loses wakes:
        // a waker that sets the flag between the clear and the read has its write consumed
        // by that read, and the flag stays set over an empty eventfd, so every later wake
        // is skipped. In this order a write the read consumes belongs to a waker that set
        // the flag before the clear, and whatever it published is seen below.
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
        between();
        // A read-modify-write, so it acquires what every waker that found the flag set
        // published before its own swap.
        self.pending
            .swap(false, std::sync::atomic::Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The eventfd's counter: how many times it was written since it was last read (0 when
    /// it was not).
    fn counter(waker: &Waker) -> u64 {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from the waker's non-blocking eventfd.
        let read = unsafe { libc::read(waker.raw_fd(), (&mut value as *mut u64).cast(), 8) };
        if read == 8 { value } else { 0 }
    }

    #[test]
    fn wake_ups_are_coalesced_until_the_shard_takes_them() {
        let waker = Waker::new().expect("eventfd");
        for _ in 0..100 {
            waker.wake();
        }
        waker.notify_data();
        assert_eq!(
            counter(&waker),
            1,
            "one write for every wake before the shard looked"
        );
        waker.reset();
        assert!(waker.take_data());
        assert_eq!(counter(&waker), 0, "nothing pending after reset");
        waker.wake();
        assert_eq!(
            counter(&waker),
            1,
            "a wake after the shard took the last one writes again"
        );
    }

    /// True if the eventfd is readable within `timeout_ms` (0: now).
    fn readable_within(waker: &Waker, timeout_ms: i32) -> bool {
        let mut poll = libc::pollfd {
            fd: waker.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live pollfd.
        unsafe { libc::poll(&mut poll, 1, timeout_ms) == 1 }
    }

    fn readable(waker: &Waker) -> bool {
        readable_within(waker, 0)
    }

    #[test]
    fn a_wake_in_the_middle_of_a_reset_is_not_lost() {
        let waker = Waker::new().expect("eventfd");
        waker.wake();
        // Another thread wakes the shard while it takes the first wake-up.
        waker.reset_around(|| waker.wake());
        // Whatever that wake announced, the shard sees after `reset` returns. The next wake
        // must reach the eventfd: a flag left set over an empty eventfd would swallow it,
        // and every one after it.
        waker.wake();
        assert!(
            readable(&waker),
            "a wake after the reset did not wake the shard"
        );
        waker.reset();
        assert!(!readable(&waker));
        waker.wake();
        assert!(readable(&waker));
    }

    #[test]
    fn a_wake_racing_the_shard_is_never_lost() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let waker = Arc::new(Waker::new().expect("eventfd"));
        let producers = 2u64;
        let rounds = 20_000u64;
        // What each producer published last, and what the shard has seen of it.
        let published: Arc<Vec<AtomicU64>> =
            Arc::new((0..producers).map(|_| AtomicU64::new(0)).collect());
        let taken: Arc<Vec<AtomicU64>> =
            Arc::new((0..producers).map(|_| AtomicU64::new(0)).collect());
        let threads: Vec<_> = (0..producers as usize)
            .map(|p| {
                let (waker, published, taken) = (waker.clone(), published.clone(), taken.clone());
                std::thread::spawn(move || {
                    for i in 1..=rounds {
                        published[p].store(i, Ordering::Relaxed);
                        waker.wake();
                        // Every other value waits until the shard has seen it, so wakes land
                        // while a wake-up is pending, after the shard took it, and while it
                        // is taking it.
                        if i % 2 == 0 {
                            while taken[p].load(Ordering::Acquire) < i {
                                std::hint::spin_loop();
                            }
                        }
                    }
                })
            })
            .collect();
        // The shard's loop: wait for the eventfd, take the wake-up, look. Every value
        // published is eventually seen, however the threads interleave.
        loop {
            let seen: Vec<u64> = taken.iter().map(|v| v.load(Ordering::Relaxed)).collect();
            assert!(
                readable_within(&waker, 10_000),
                "a wake was lost: saw {seen:?} of {rounds} each"
            );
            waker.reset();
            let mut all = true;
            for (published, taken) in published.iter().zip(taken.iter()) {
                let value = published.load(Ordering::Relaxed);
                taken.store(value, Ordering::Release);
                all &= value == rounds;
            }
            if all {
                break;
            }
        }
        for thread in threads {
            thread.join().expect("producer");
        }
    }
}
