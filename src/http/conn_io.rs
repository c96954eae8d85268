//! The socket of one HTTP connection as hyper sees it: it holds the
//! connection's budget slot and its idle deadline for as long as the file
//! descriptor lives. A WebSocket upgrade moves it into the signaling socket,
//! so an upgraded connection keeps counting against `http.max_connections`
//! (it still holds an fd) and still ends if it moves no byte for
//! `http.idle_timeout` (the hub's pings keep an honest one moving).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::budget::{Budget, ConnPermit, Exhaustions};

/// `io` with a budget slot and an idle deadline: a read or write that waits
/// while no byte has moved either way for `idle` fails with `TimedOut`.
pub struct ConnIo<T> {
    io: T,
    _permit: ConnPermit,
    idle: Duration,
    /// When the last byte moved, plus `idle`.
    deadline: Instant,
    /// One timer per direction, so a reader and a writer waiting on
    /// different tasks are each woken.
    read_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    exhaustions: Arc<Exhaustions>,
    /// The client, for the log line of a timeout.
    peer: IpAddr,
    timed_out: bool,
}

impl<T> ConnIo<T> {
    pub fn new(io: T, peer: IpAddr, permit: ConnPermit, idle: Duration, exhaustions: Arc<Exhaustions>) -> Self {
        ConnIo {
            io,
            _permit: permit,
            idle,
            deadline: Instant::now() + idle,
            read_timer: None,
            write_timer: None,
            exhaustions,
            peer,
            timed_out: false,
        }
    }

    fn moved(&mut self) {
        self.deadline = Instant::now() + self.idle;
    }

    /// Called when the inner IO is not ready: Ready(error) once the idle
    /// deadline has passed, else Pending with `timer` armed to wake `cx`.
    fn check_idle(&mut self, cx: &mut Context<'_>, write: bool) -> Poll<io::Error> {
        let deadline = self.deadline;
        let timer = if write {
            &mut self.write_timer
        } else {
            &mut self.read_timer
        };
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        // Progress moves the deadline without touching the timer; catch up
        // here, when the connection waits, rather than on every byte.
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.timed_out {
            self.timed_out = true;
            self.exhaustions.exhausted(Budget::HttpIdleTimeout, Some(self.peer));
        }
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "http.idle_timeout"))
    }
}

impl<T> ConnIo<T> {
    /// What the inner IO answered, with the deadline moved on progress and
    /// checked while it waits.
    fn track<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>, write: bool) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.moved();
                Poll::Ready(r)
            }
            Poll::Pending => self.check_idle(cx, write).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        this.track(cx, polled, false)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, data);
        this.track(cx, polled, true)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.track(cx, polled, true)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.track(cx, polled, true)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.track(cx, polled, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::ConnLimiter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn permit(ex: &Arc<Exhaustions>) -> ConnPermit {
        let l = ConnLimiter::new(
            (Budget::HttpConnections, 4),
            (Budget::HttpConnectionsPerIp, 4),
            ex.clone(),
        );
        l.acquire(LOCAL).unwrap()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    const IDLE: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_silent_reader_times_out_and_is_counted_once() {
        let ex = Arc::new(Exhaustions::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = ConnIo::new(a, LOCAL, permit(&ex), IDLE, ex.clone());
        // Bytes that keep arriving keep it open past the first deadline.
        for _ in 0..3 {
            tokio::time::sleep(IDLE / 2).await;
            b.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            io.read_exact(&mut one).await.unwrap();
        }
        let started = Instant::now();
        let mut one = [0u8; 1];
        let e = io.read(&mut one).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= IDLE, "{:?}", started.elapsed());
        assert_eq!(ex.get(Budget::HttpIdleTimeout), 1);
        let _ = io.read(&mut one).await;
        assert_eq!(ex.get(Budget::HttpIdleTimeout), 1, "one connection, one count");
    }

    #[tokio::test]
    async fn a_writer_to_a_peer_that_reads_nothing_times_out() {
        let ex = Arc::new(Exhaustions::default());
        let (a, _b) = tokio::io::duplex(64);
        let mut io = ConnIo::new(a, LOCAL, permit(&ex), IDLE, ex.clone());
        let e = io.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
