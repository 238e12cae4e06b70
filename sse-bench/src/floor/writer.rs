//! A writer thread: its own epoll, its share of the sockets, and on each wake one pass that
//! gives every socket of every group with new events everything appended since its cursor, in
//! one `sendmsg`, straight from the group's log. Nothing is allocated per event or per socket on
//! the way. Passes come at most once a millisecond ([`PASS_INTERVAL`]), so events published
//! faster than that share writes; a writer that passed longer ago passes as soon as it is woken.
//!
//! A socket whose buffer is full waits for the kernel's `EPOLLOUT` (edge-triggered, registered
//! once with the socket), and is then written from where it stopped; a socket that reads as
//! closed (or sends anything) is dropped.

use std::{
    collections::HashMap,
    io::IoSlice,
    net::TcpStream,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use super::{log::Cursor, Group};

/// The epoll token of the writer's wake-up eventfd; sockets' tokens are their slots.
const WAKE: u64 = u64::MAX;
/// A writer passes at most this often: events that come faster go out together, as many per
/// write as came in the interval. It delays an event by at most this much, and only one that
/// follows another within it (at 2 events/s, none); a server keeping up with a publisher
/// that fast batches at least as much (see BENCHMARKS.md, "The floor").
const PASS_INTERVAL: Duration = Duration::from_millis(1);
/// At most this many pieces of the log per `sendmsg`: a socket far behind gets the rest next.
const SLICES: usize = 16;

/// A socket handed to a writer, with its group and where in the log it starts.
pub(super) struct Joining {
    pub(super) socket: TcpStream,
    pub(super) group: Arc<Group>,
    pub(super) cursor: Cursor,
}

/// The side of a writer other threads see.
pub(super) struct Writer {
    /// Which writer this is: its index in the groups' flags.
    index: usize,
    epoll: OwnedFd,
    wake: OwnedFd,
    /// A wake-up is pending: publishers need not write the eventfd again.
    woken: AtomicBool,
    joining: Mutex<Vec<Joining>>,
    /// Ids of the groups with new events since the writer last wrote them.
    dirty: Mutex<Vec<u32>>,
}

impl Writer {
    pub(super) fn new(index: usize) -> Result<Self, String> {
        // SAFETY: plain syscalls; each result is checked before it is owned.
        let (epoll, wake) = unsafe {
            let epoll = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            let wake = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            if epoll < 0 || wake < 0 {
                return Err(format!("epoll: {}", std::io::Error::last_os_error()));
            }
            (OwnedFd::from_raw_fd(epoll), OwnedFd::from_raw_fd(wake))
        };
        let writer = Self {
            index,
            epoll,
            wake,
            woken: AtomicBool::new(false),
            joining: Mutex::default(),
            dirty: Mutex::default(),
        };
        writer.register(writer.wake.as_raw_fd(), libc::EPOLLIN as u32, WAKE)?;
        Ok(writer)
    }

    pub(super) fn index(&self) -> usize {
        self.index
    }

    fn register(&self, fd: i32, events: u32, token: u64) -> Result<(), String> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: both fds are open; `event` is valid for the call.
        let added =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if added < 0 {
            return Err(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Hands a new socket to this writer.
    pub(super) fn join(&self, joining: Joining) {
        self.joining.lock().unwrap().push(joining);
        self.wake();
    }

    /// Tells this writer that `group` has new events (its flag for this writer was clear).
    pub(super) fn mark(&self, group: u32) {
        self.dirty.lock().unwrap().push(group);
        self.wake();
    }

    fn wake(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            let one = 1u64;
            // SAFETY: the eventfd is open; 8 bytes from `one`. A full counter is a pending wake.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Writes this writer's sockets, forever.
    pub(super) fn run(&self) {
        let mut state = State::default();
        let (mut joining, mut dirty) = (Vec::new(), Vec::new());
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        // When the last pass began, and when the next one is due (woken, not yet passed).
        let (mut last_pass, mut due) = (Instant::now(), None::<Instant>);
        loop {
            let timeout = due.map(|due| {
                let wait = due.saturating_duration_since(Instant::now());
                libc::timespec {
                    tv_sec: wait.as_secs() as libc::time_t,
                    tv_nsec: wait.subsec_nanos() as libc::c_long,
                }
            });
            // SAFETY: `events` has room for as many events as it says; the timeout, if any,
            // lives through the call.
            let ready = unsafe {
                libc::epoll_pwait2(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    timeout.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                    std::ptr::null(),
                )
            };
            for event in &events[..ready.max(0) as usize] {
                let (flags, token) = (event.events, event.u64);
                if token == WAKE {
                    let mut count = 0u64;
                    // SAFETY: the eventfd is open; 8 bytes into `count`.
                    unsafe {
                        libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8)
                    };
                    due.get_or_insert(last_pass + PASS_INTERVAL);
                } else if flags
                    & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                    != 0
                {
                    state.close(token as usize);
                } else if let Some(stream) =
                    state.slots.get_mut(token as usize).and_then(Option::as_mut)
                {
                    if stream.blocked {
                        stream.blocked = false;
                        state.write(token as usize);
                    }
                }
            }
            let now = Instant::now();
            if due.map_or(true, |due| due > now) {
                continue;
            }
            (due, last_pass) = (None, now);
            // Cleared before the lists are taken: whatever comes after wakes the writer again.
            self.woken.store(false, Ordering::Release);
            std::mem::swap(&mut joining, &mut *self.joining.lock().unwrap());
            for new in joining.drain(..) {
                state.join(self, new);
            }
            std::mem::swap(&mut dirty, &mut *self.dirty.lock().unwrap());
            for id in dirty.drain(..) {
                state.write_group(self.index, id);
            }
        }
    }
}

/// What only the writer's thread touches.
#[derive(Default)]
struct State {
    /// Streams by epoll token; a free slot is `None` and listed in `free`.
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    /// This writer's streams of each group, by group id (kept when empty: the group may mark
    /// this writer again, and the mark is cleared here).
    groups: HashMap<u32, Members>,
    /// Slots whose write failed in a pass, closed after it.
    failed: Vec<usize>,
}

struct Stream {
    socket: TcpStream,
    cursor: Cursor,
    group: u32,
    /// Where it is in its group's `streams`.
    index: usize,
    /// Its buffer is full: written again on `EPOLLOUT`.
    blocked: bool,
}

impl Stream {
    /// Gives the stream everything it has not been sent, in one `sendmsg`; false if the socket
    /// failed.
    fn send(&mut self) -> bool {
        if self.blocked {
            return true;
        }
        let (written, full) = {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let filled = self.cursor.unsent(&mut slices);
            if filled == 0 {
                return true;
            }
            let unsent: usize = slices[..filled].iter().map(|slice| slice.len()).sum();
            match send(&self.socket, &slices[..filled]) {
                Ok(written) => (written, written < unsent),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => (0, true),
                Err(_) => return false,
            }
        };
        self.cursor.advance(written);
        self.blocked = full;
        true
    }
}

/// `sendmsg` of `slices`: a socket's own call, where `writev` goes through the file layer
/// first (its position lock and checks: 8 % of the floor's time at 10,000 sockets).
fn send(socket: &TcpStream, slices: &[IoSlice<'_>]) -> std::io::Result<usize> {
    // SAFETY: an all-zero `msghdr` is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix.
    message.msg_iov = slices.as_ptr() as *mut libc::iovec;
    message.msg_iovlen = slices.len() as _;
    // SAFETY: the socket is open; `message` points at `slices`, which outlive the call.
    let sent = unsafe {
        libc::sendmsg(
            socket.as_raw_fd(),
            &message,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(sent as usize)
}

struct Members {
    group: Arc<Group>,
    streams: Vec<usize>,
}

impl State {
    fn join(&mut self, writer: &Writer, new: Joining) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if writer
            .register(new.socket.as_raw_fd(), events, slot as u64)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        let id = new.group.id;
        let members = self.groups.entry(id).or_insert_with(|| Members {
            group: new.group,
            streams: Vec::new(),
        });
        self.slots[slot] = Some(Stream {
            socket: new.socket,
            cursor: new.cursor,
            group: id,
            index: members.streams.len(),
            blocked: false,
        });
        members.streams.push(slot);
        // What was appended since the cursor was taken.
        self.write(slot);
    }

    /// Writes every stream of group `id` that is behind.
    fn write_group(&mut self, writer: usize, id: u32) {
        let Self {
            slots,
            groups,
            failed,
            ..
        } = self;
        let Some(members) = groups.get(&id) else {
            return;
        };
        // Cleared before writing: an append from now on marks the group again.
        members.group.marked[writer].store(false, Ordering::Release);
        let end = members.group.log.end();
        for &slot in &members.streams {
            if let Some(stream) = slots[slot].as_mut() {
                if stream.cursor.at() < end && !stream.send() {
                    failed.push(slot);
                }
            }
        }
        while let Some(slot) = self.failed.pop() {
            self.close(slot);
        }
    }

    /// Sends the stream in `slot` what it has not been sent.
    fn write(&mut self, slot: usize) {
        let sent = self
            .slots
            .get_mut(slot)
            .and_then(Option::as_mut)
            .map_or(true, Stream::send);
        if !sent {
            self.close(slot);
        }
    }

    fn close(&mut self, slot: usize) {
        let Some(stream) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        let Some(members) = self.groups.get_mut(&stream.group) else {
            return;
        };
        members.streams.swap_remove(stream.index);
        if let Some(&moved) = members.streams.get(stream.index) {
            if let Some(moved) = self.slots[moved].as_mut() {
                moved.index = stream.index;
            }
        }
        // Dropping the socket closes it, which takes it out of the epoll set.
    }
}
