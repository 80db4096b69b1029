//! Capture of an instance's stdout and stderr into a bounded per-invocation buffer.
//!
//! Readers always drain the pipes (a child blocked on a full pipe would look hung), keep
//! at most `limit` bytes per invocation and count the rest. At the end of an invocation
//! [`LogCapture::settle`] reads whatever is already in the pipes, so that what a handler
//! printed before it posted its response belongs to that invocation.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug)]
struct State {
    buf: Vec<u8>,
    dropped: usize,
}

#[derive(Debug)]
struct Buffer {
    state: Mutex<State>,
    limit: usize,
}

impl Buffer {
    fn push(&self, data: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.limit.saturating_sub(s.buf.len());
        let keep = room.min(data.len());
        s.buf.extend_from_slice(&data[..keep]);
        s.dropped += data.len() - keep;
    }
}

/// The capture of one instance's output streams.
pub struct LogCapture {
    buffer: Arc<Buffer>,
    settle_txs: Vec<mpsc::Sender<oneshot::Sender<()>>>,
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok(())
}

/// Reads what is in the pipe right now; `Ok(false)` at end of file.
fn read_available(fd: &OwnedFd, buffer: &Buffer, chunk: &mut [u8]) -> io::Result<bool> {
    loop {
        match nix::unistd::read(fd, chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => buffer.push(&chunk[..n]),
            Err(nix::errno::Errno::EAGAIN) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

async fn pump(
    fd: OwnedFd,
    buffer: Arc<Buffer>,
    mut settle_rx: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let Ok(()) = set_nonblocking(&fd) else { return };
    // SAFETY: `fd` is an owned descriptor that the AsyncFd takes over; nothing else can
    // close it or register it while the AsyncFd lives.
    let Ok(afd) = (unsafe { AsyncFd::register(fd) }) else {
        return;
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            biased;
            ready = afd.readable() => {
                let Ok(mut guard) = ready else { return };
                match read_available(afd.get_ref(), &buffer, &mut chunk) {
                    Ok(true) => guard.clear_ready(),
                    Ok(false) | Err(_) => return,
                }
            }
            Some(ack) = settle_rx.recv() => {
                let open = read_available(afd.get_ref(), &buffer, &mut chunk).unwrap_or(false);
                let _ = ack.send(());
                if !open {
                    return;
                }
            }
        }
    }
}

impl LogCapture {
    /// Starts draining `streams` (the child's stdout and stderr) into one buffer that
    /// keeps at most `limit` bytes between two calls to [`LogCapture::take`].
    pub fn start(streams: Vec<OwnedFd>, limit: usize) -> Self {
        let buffer = Arc::new(Buffer {
            state: Mutex::new(State {
                buf: Vec::new(),
                dropped: 0,
            }),
            limit,
        });
        let mut settle_txs = Vec::new();
        for fd in streams {
            let (tx, rx) = mpsc::channel(1);
            settle_txs.push(tx);
            tokio::spawn(pump(fd, buffer.clone(), rx));
        }
        LogCapture { buffer, settle_txs }
    }

    /// Waits (briefly) until what the child already wrote has been read.
    pub async fn settle(&self) {
        for tx in &self.settle_txs {
            let (ack_tx, ack_rx) = oneshot::channel();
            if tx.send(ack_tx).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_millis(200), ack_rx).await;
            }
        }
    }

    /// Takes the output captured since the last call, with a marker if some was dropped.
    pub fn take(&self) -> String {
        let (buf, dropped) = {
            let mut s = self.buffer.state.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut s.buf),
                std::mem::replace(&mut s.dropped, 0),
            )
        };
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        if dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[wisp: output truncated, {dropped} bytes dropped]\n"
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn captures_settles_and_truncates() {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        let capture = LogCapture::start(vec![read_end], 10);
        let mut w = std::fs::File::from(write_end);
        w.write_all(b"hello\n").unwrap();
        capture.settle().await;
        assert_eq!(capture.take(), "hello\n");
        w.write_all(b"0123456789abcdef").unwrap();
        capture.settle().await;
        assert_eq!(
            capture.take(),
            "0123456789\n[wisp: output truncated, 6 bytes dropped]\n"
        );
        drop(w);
        capture.settle().await;
        assert_eq!(capture.take(), "");
    }
}
