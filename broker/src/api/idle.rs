//! Connections of the API that go quiet are closed: a client that connects and sends
//! nothing (or stops half-way) must not hold a socket for ever. hyper's header timeout
//! starts only once it knows the HTTP version, which it learns from the first bytes, so
//! the bound is kept here, on the TCP stream, under TLS: no byte in or out for
//! [`IDLE_TIMEOUT`] ends the connection. The longest an API call waits on a host (30 s)
//! fits well inside it.

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant, Sleep};

/// How long a connection may go without a byte either way.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Wraps each accepted stream in an [`IdleStream`] (put it under the TLS acceptor),
/// and has it send each write at once (`TCP_NODELAY`): otherwise the last piece of
/// a larger answer waits for the client's delayed ACK, 40 ms on Linux.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleAcceptor;

impl<S> Accept<TcpStream, S> for IdleAcceptor {
    type Stream = IdleStream<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(IdleStream<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        ready(
            stream
                .set_nodelay(true)
                .map(|()| (IdleStream::new(stream, IDLE_TIMEOUT), service)),
        )
    }
}

/// A stream that fails with `TimedOut` once nothing went through it for its timeout.
pub struct IdleStream<I> {
    inner: I,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<I> IdleStream<I> {
    pub fn new(inner: I, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: Box::pin(sleep(timeout)),
        }
    }

    /// Something went through: the quiet time starts again.
    fn active(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.timeout);
    }

    /// Pending: the connection is waiting; fail once it has waited too long.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection was idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for IdleStream<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for IdleStream<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.active();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.waiting(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_times_out_and_a_busy_one_does_not() {
        let (client, server) = tokio::io::duplex(64);
        let mut idle = IdleStream::new(server, Duration::from_secs(10));
        let mut client = client;
        let mut buf = [0u8; 4];
        // Bytes every 6 s keep it open past the timeout.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(6)).await;
            client.write_all(b"ping").await.unwrap();
            idle.read_exact(&mut buf).await.unwrap();
        }
        // Then nothing: the read fails once 10 s have passed.
        let err = idle.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
