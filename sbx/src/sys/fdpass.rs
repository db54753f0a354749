//! Descriptors passed over a Unix socket (SCM_RIGHTS): the one implementation, used for the
//! proxy's sockets and the seccomp listener that stage-2 hands to sbx, and for the sockets
//! the `-p` connector hands back. Every message carries one data byte, which tells a
//! listener handover from a message of sockets. Sending allocates nothing (stack buffers,
//! raw calls), so it may run between fork and exec.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd},
};

/// Most descriptors in one message of [`send_fds`] and [`recv_fds`].
pub const FDS_PER_MESSAGE: usize = 16;

/// The byte sent along with a message of [`send_fds`].
const FDS_BYTE: u8 = b'f';
/// The byte sent along with the listener fd by [`send_listener`].
const LISTENER_BYTE: u8 = b'L';

/// What `readlink /proc/self/fd/N` shows for a seccomp listener.
const LISTENER_LINK: &str = "anon_inode:seccomp notify";

/// Control buffer for [`FDS_PER_MESSAGE`] descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 128]);

// The header (16 bytes on 64-bit) and FDS_PER_MESSAGE ints fit.
const _: () = assert!(16 + FDS_PER_MESSAGE * size_of::<libc::c_int>() <= 128);

/// Errors of the seccomp listener's handover; each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// `sendmsg` of the listener fd failed.
    #[error("sending the seccomp listener fd (sendmsg SCM_RIGHTS)")]
    SendListener(#[source] io::Error),
    /// `recvmsg` of the listener fd failed.
    #[error("receiving the seccomp listener fd (recvmsg SCM_RIGHTS)")]
    RecvListener(#[source] io::Error),
    /// What arrived is not one seccomp listener fd.
    #[error("receiving the seccomp listener fd: {0}")]
    BadHandover(&'static str),
}

/// Sends `byte` and `fds` (at most [`FDS_PER_MESSAGE`]) as one message. Blocking; retried on
/// EINTR; `MSG_NOSIGNAL`, so a closed peer is EPIPE rather than SIGPIPE.
fn send_message(sock: impl AsFd, byte: u8, fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > FDS_PER_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors for one message"));
    }
    let mut control = Control([0; 128]);
    let mut byte = [byte];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; all-zero is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    // An empty SCM_RIGHTS message is refused: send the byte alone.
    if !fds.is_empty() {
        let data_len = size_of_val(fds) as u32;
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        // SAFETY: msg_control points at 128 aligned bytes, more than CMSG_SPACE of
        // FDS_PER_MESSAGE ints (checked at compile time above), so the first header and its
        // data lie inside the buffer.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        // SAFETY: `cmsg` points into `control` (checked non-null above), with room for the
        // header and `fds.len()` ints of data.
        unsafe {
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), *fd);
            }
        }
    }
    loop {
        // SAFETY: `msg` describes buffers that live across the call; sendmsg only reads them.
        let n = unsafe { libc::sendmsg(sock.as_fd().as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n == 1 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if n < 0 && err.kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return Err(if n < 0 { err } else { io::Error::from(io::ErrorKind::WriteZero) });
    }
}

/// One message as [`recv_message`] received it.
struct Message {
    /// The data byte; `None` at end of file.
    byte: Option<u8>,
    /// Every descriptor that arrived, close-on-exec.
    fds: Vec<OwnedFd>,
    /// The kernel had more control data than fitted (and closed the descriptors that did not).
    truncated: bool,
}

/// Receives one message of [`send_message`]. Blocking; retried on EINTR. Every descriptor
/// that arrived is owned before anything is checked, so that none leaks.
fn recv_message(sock: impl AsFd) -> io::Result<Message> {
    let mut control = Control([0; 128]);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: msghdr is plain data; all-zero is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    let n = loop {
        // SAFETY: recvmsg writes at most 1 data byte and msg_controllen control bytes into
        // buffers that live across the call.
        let n = unsafe { libc::recvmsg(sock.as_fd().as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: recvmsg filled `msg`; the CMSG_* macros walk the headers inside msg_control and
    // msg_controllen, and each SCM_RIGHTS payload holds ints the kernel installed for us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = data.offset_from(cmsg.cast::<u8>()) as usize;
                let count = ((*cmsg).cmsg_len as usize).saturating_sub(header) / size_of::<libc::c_int>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Message { byte: (n > 0).then_some(byte[0]), fds, truncated: msg.msg_flags & libc::MSG_CTRUNC != 0 })
}

/// Sends `fds` (at most [`FDS_PER_MESSAGE`]) over the Unix socket `sock` as
/// one message (one data byte and SCM_RIGHTS).
pub fn send_fds(sock: &impl AsFd, fds: &[RawFd]) -> io::Result<()> {
    send_message(sock, FDS_BYTE, fds)
}

/// Receives one message of descriptors sent by `send_fds`, close-on-exec.
/// A message that carried more than [`FDS_PER_MESSAGE`] (the kernel closes
/// the ones that did not fit) or none at end of file is an error.
pub fn recv_fds(sock: &impl AsFd) -> io::Result<Vec<OwnedFd>> {
    let msg = recv_message(sock)?;
    if msg.truncated {
        return Err(io::Error::other(format!("more than {FDS_PER_MESSAGE} descriptors in one message")));
    }
    if msg.byte.is_none() && msg.fds.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(msg.fds)
}

/// Sends `fds`, however many, as messages of [`send_fds`], then one message
/// without descriptors that ends them, for [`recv_all_fds`].
pub fn send_all_fds(sock: &impl AsFd, fds: &[RawFd]) -> io::Result<()> {
    fds.chunks(FDS_PER_MESSAGE).try_for_each(|chunk| send_fds(sock, chunk))?;
    send_fds(sock, &[])
}

/// Receives what [`send_all_fds`] sent: descriptors until the message
/// without any.
pub fn recv_all_fds(sock: &impl AsFd) -> io::Result<Vec<OwnedFd>> {
    let mut out = Vec::new();
    loop {
        let more = recv_fds(sock)?;
        if more.is_empty() {
            return Ok(out);
        }
        out.extend(more);
    }
}

/// Send the seccomp `listener` over the Unix socket `sock` (SCM_RIGHTS, with one data byte)
/// and close it. Blocking. Allocates nothing, so it may run between fork and exec.
pub fn send_listener(sock: impl AsFd, listener: OwnedFd) -> Result<(), HandoverError> {
    send_message(sock, LISTENER_BYTE, &[listener.as_raw_fd()]).map_err(HandoverError::SendListener)
}

/// Receive one seccomp listener fd sent with [`send_listener`] on `sock`. Blocking. The fd
/// is close-on-exec; anything that is not exactly one seccomp listener is refused (and any
/// extra fds are closed).
pub fn recv_listener(sock: impl AsFd) -> Result<OwnedFd, HandoverError> {
    let Message { byte, mut fds, truncated } = recv_message(sock).map_err(HandoverError::RecvListener)?;
    if byte.is_none() {
        return Err(HandoverError::BadHandover("the peer closed the socket without sending a listener"));
    }
    if truncated {
        return Err(HandoverError::BadHandover("control data truncated"));
    }
    if byte != Some(LISTENER_BYTE) || fds.len() != 1 {
        return Err(HandoverError::BadHandover("expected exactly one fd"));
    }
    let Some(fd) = fds.pop() else {
        return Err(HandoverError::BadHandover("expected exactly one fd"));
    };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(HandoverError::RecvListener)?;
    if link.as_os_str() != LISTENER_LINK {
        return Err(HandoverError::BadHandover("the fd is not a seccomp listener"));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socketpair() -> (OwnedFd, OwnedFd) {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).expect("socketpair")
    }

    #[test]
    fn recv_listener_refuses_what_is_not_a_listener() {
        let (a, b) = socketpair();
        let (r, _w) = crate::sys::pipe().expect("pipe");
        send_listener(&a, r).expect("send");
        assert!(matches!(recv_listener(&b), Err(HandoverError::BadHandover("the fd is not a seccomp listener"))));
        drop(a);
        assert!(matches!(recv_listener(&b), Err(HandoverError::BadHandover(_))));
    }

    #[test]
    fn fds_arrive_in_messages_of_sixteen_until_the_empty_one() {
        let (a, b) = socketpair();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..20).map(|_| crate::sys::pipe().expect("pipe")).collect();
        let raw: Vec<RawFd> = pipes.iter().map(|(r, _)| r.as_raw_fd()).collect();
        send_all_fds(&a, &raw).expect("send");
        assert_eq!(recv_all_fds(&b).expect("recv").len(), 20);
        drop(a);
        assert_eq!(recv_fds(&b).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_listener_message_is_not_taken_for_sockets_and_back() {
        let (a, b) = socketpair();
        let (r, _w) = crate::sys::pipe().expect("pipe");
        send_fds(&a, &[r.as_raw_fd()]).expect("send");
        assert!(matches!(recv_listener(&b), Err(HandoverError::BadHandover("expected exactly one fd"))));
    }
}
