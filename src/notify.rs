//! A file descriptor that is readable while a condition holds (events queued), so callers can
//! wait for it with epoll/kqueue/select or asyncio. eventfd on Linux, a pipe on other Unixes.
//! `set` and `clear` are called only on transitions, under the owner's lock.

#[cfg(unix)]
pub struct NotifyFd {
    read: libc::c_int,
    write: libc::c_int,
}

#[cfg(target_os = "linux")]
impl NotifyFd {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned by this struct.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(NotifyFd {
            read: fd,
            write: fd,
        })
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
impl NotifyFd {
    pub fn new() -> std::io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors pipe() writes.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        for fd in fds {
            // SAFETY: fd was just created and is owned here.
            unsafe {
                libc::fcntl(
                    fd,
                    libc::F_SETFL,
                    libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
                );
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        Ok(NotifyFd {
            read: fds[0],
            write: fds[1],
        })
    }
}

#[cfg(unix)]
impl NotifyFd {
    /// The descriptor to wait on for readability.
    pub fn fd(&self) -> i32 {
        self.read
    }

    /// Makes the descriptor readable.
    pub fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 (an eventfd needs exactly 8; a pipe takes any).
        unsafe { libc::write(self.write, (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor unreadable again.
    pub fn clear(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a live buffer; the fd is non-blocking so this never waits.
        while unsafe { libc::read(self.read, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

#[cfg(unix)]
impl Drop for NotifyFd {
    fn drop(&mut self) {
        // SAFETY: both fds are owned by this struct and closed exactly once.
        unsafe {
            libc::close(self.read);
            if self.write != self.read {
                libc::close(self.write);
            }
        }
    }
}

/// Windows has no pollable descriptor for this; `wsc_client_event_fd` returns -1 there.
#[cfg(not(unix))]
pub struct NotifyFd;

#[cfg(not(unix))]
impl NotifyFd {
    pub fn new() -> std::io::Result<Self> {
        Ok(NotifyFd)
    }
    pub fn fd(&self) -> i32 {
        -1
    }
    pub fn set(&self) {}
    pub fn clear(&self) {}
}
