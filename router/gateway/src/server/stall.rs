//! The write stall: a socket whose client has not taken a byte for `server.write_stall_ms`
//! while the gateway had bytes to send fails its write, and hyper closes the connection.
//!
//! A streamed answer's pump notices the same client (it stops making room) and drops the
//! upstream call; this is what frees the socket and the connection's task, since hyper polls
//! nothing else of a connection whose writes are blocked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub(super) struct WriteStall<IO> {
    io: IO,
    limit: Duration,
    /// Armed by the first write that could not proceed; disarmed by any that did.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteStall<IO> {
    pub(super) fn new(io: IO, limit: Duration) -> Self {
        WriteStall {
            io,
            limit,
            timer: None,
        }
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.timer = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client did not read for {} ms", limit.as_millis()),
            )));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteStall<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteStall<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback pair whose reading side never reads: the writer fails once the socket
    /// buffers are full and `limit` has passed, not before.
    #[tokio::test]
    async fn a_reader_that_stops_fails_the_write_after_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let _client = client.unwrap();
        let limit = Duration::from_millis(300);
        let mut w = WriteStall::new(server.unwrap().0, limit);
        let chunk = vec![b'x'; 64 << 10];
        let started = tokio::time::Instant::now();
        let mut sent = 0usize;
        let err = loop {
            match w.write(&chunk).await {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= limit);
        assert!(sent > 0, "the buffers took something first");
    }

    #[tokio::test]
    async fn a_reader_that_keeps_reading_is_never_cut() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            let mut total = 0;
            loop {
                // Slower than the writer, with pauses shorter than the limit.
                tokio::time::sleep(Duration::from_millis(5)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let mut w = WriteStall::new(server.unwrap().0, Duration::from_secs(2));
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..64 {
            w.write_all(&chunk).await.unwrap();
        }
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 64 * (64 << 10));
    }
}
