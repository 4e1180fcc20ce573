//! TCP: a listener with a backlog of listening sockets, and streams with async read and write.

use super::{NetError, Stack, with_stack};
use alloc::vec;
use alloc::vec::Vec;
use core::future::poll_fn;
use core::task::Poll;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, Socket, State};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

/// Receive buffer per connection.
const RX_BUFFER: usize = 8 * 1024;
/// Send buffer per connection.
const TX_BUFFER: usize = 16 * 1024;
/// Listening sockets per listener: connections that can be in the handshake at once.
const BACKLOG: usize = 4;

fn new_socket() -> Socket<'static> {
    let mut socket = Socket::new(
        tcp::SocketBuffer::new(vec![0; RX_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TX_BUFFER]),
    );
    socket.set_nagle_enabled(false);
    socket
}

fn listen_socket(stack: &mut Stack, port: u16) -> Result<SocketHandle, NetError> {
    if !stack.has_room() {
        return Err(NetError::TooManySockets);
    }
    let mut socket = new_socket();
    socket.listen(port).map_err(|_| NetError::AddrInUse)?;
    Ok(stack.sockets.add(socket))
}

/// A TCP listener: `TcpListener::bind(80)?.accept().await`.
pub struct TcpListener {
    port: u16,
    backlog: Vec<SocketHandle>,
}

impl TcpListener {
    /// Listens on `port` of the guest's address.
    pub fn bind(port: u16) -> Result<TcpListener, NetError> {
        if port == 0 {
            return Err(NetError::InvalidAddress);
        }
        with_stack(|stack| {
            let mut backlog = Vec::new();
            for _ in 0..BACKLOG {
                match listen_socket(stack, port) {
                    Ok(handle) => backlog.push(handle),
                    Err(e) if backlog.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(TcpListener { port, backlog })
        })?
    }

    /// The port listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Waits for a connection.
    pub async fn accept(&mut self) -> Result<TcpStream, NetError> {
        poll_fn(|cx| {
            with_stack(|stack| {
                // Keep the backlog full while sockets are available.
                while self.backlog.len() < BACKLOG {
                    match listen_socket(stack, self.port) {
                        Ok(handle) => self.backlog.push(handle),
                        Err(_) => break,
                    }
                }
                let ready = self.backlog.iter().position(|&h| {
                    !matches!(
                        stack.sockets.get::<Socket>(h).state(),
                        State::Listen | State::SynReceived
                    )
                });
                if let Some(index) = ready {
                    let handle = self.backlog.swap_remove(index);
                    return Poll::Ready(Ok(TcpStream { handle }));
                }
                for &handle in &self.backlog {
                    stack.sockets.get_mut::<Socket>(handle).register_recv_waker(cx.waker());
                }
                if self.backlog.len() < BACKLOG {
                    stack.wait_for_room(cx.waker());
                }
                Poll::Pending
            })
            .unwrap_or_else(|e| Poll::Ready(Err(e)))
        })
        .await
    }
}

impl TcpListener {
    /// Whether a connection is ready to be accepted; if not, `cx` is woken when one may be
    /// (for readiness-based callers such as an epoll emulation).
    pub fn poll_acceptable(&mut self, cx: &mut core::task::Context<'_>) -> bool {
        with_stack(|stack| {
            let ready = self.backlog.iter().any(|&h| {
                !matches!(
                    stack.sockets.get::<Socket>(h).state(),
                    State::Listen | State::SynReceived
                )
            });
            if !ready {
                for &handle in &self.backlog {
                    stack.sockets.get_mut::<Socket>(handle).register_recv_waker(cx.waker());
                }
            }
            ready
        })
        .unwrap_or(true)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let _ = with_stack(|stack| {
            for handle in self.backlog.drain(..) {
                stack.sockets.remove(handle);
            }
        });
    }
}

/// A TCP connection. Dropping it closes it gracefully (pending data is still sent).
pub struct TcpStream {
    handle: SocketHandle,
}

impl TcpStream {
    /// Connects to `addr:port` (IPv4).
    pub async fn connect(addr: [u8; 4], port: u16) -> Result<TcpStream, NetError> {
        let handle = with_stack(|stack| {
            if !stack.has_room() {
                return Err(NetError::TooManySockets);
            }
            let mut socket = new_socket();
            let local = stack.ephemeral_port();
            let remote = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(addr)), port);
            socket
                .connect(stack.iface.context(), remote, local)
                .map_err(|_| NetError::InvalidAddress)?;
            Ok(stack.sockets.add(socket))
        })??;
        let stream = TcpStream { handle };
        poll_fn(|cx| {
            stream.with(|socket| match socket.state() {
                State::SynSent | State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                State::Closed => Poll::Ready(Err(NetError::ConnectionReset)),
                _ => Poll::Ready(Ok(())),
            })
        })
        .await?;
        Ok(stream)
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Socket<'static>) -> Poll<Result<R, NetError>>,
    ) -> Poll<Result<R, NetError>> {
        with_stack(|stack| f(stack.sockets.get_mut::<Socket>(self.handle)))
            .unwrap_or_else(|e| Poll::Ready(Err(e)))
    }

    /// The peer's address and port.
    pub fn peer(&self) -> Option<([u8; 4], u16)> {
        with_stack(|stack| {
            let endpoint = stack.sockets.get::<Socket>(self.handle).remote_endpoint()?;
            match endpoint.addr {
                IpAddress::Ipv4(v4) => Some((v4.octets(), endpoint.port)),
            }
        })
        .ok()
        .flatten()
    }

    /// The local address and port.
    pub fn local(&self) -> Option<([u8; 4], u16)> {
        with_stack(|stack| {
            let endpoint = stack.sockets.get::<Socket>(self.handle).local_endpoint()?;
            match endpoint.addr {
                IpAddress::Ipv4(v4) => Some((v4.octets(), endpoint.port)),
            }
        })
        .ok()
        .flatten()
    }

    /// Whether a read and a write would complete now (data or end of stream; room or a
    /// closed side); for each that would not, `cx` is woken when it may.
    pub fn poll_ready(&self, cx: &mut core::task::Context<'_>) -> (bool, bool) {
        with_stack(|stack| {
            let socket = stack.sockets.get_mut::<Socket>(self.handle);
            let readable = socket.can_recv() || !socket.may_recv();
            let writable = socket.can_send() || !socket.may_send();
            if !readable {
                socket.register_recv_waker(cx.waker());
            }
            if !writable {
                socket.register_send_waker(cx.waker());
            }
            (readable, writable)
        })
        .unwrap_or((true, true))
    }

    /// Reads into `buf`; `Ok(0)` means the peer closed its side.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        poll_fn(|cx| {
            self.with(|socket| {
                if socket.can_recv() {
                    return Poll::Ready(
                        socket.recv_slice(buf).map_err(|_| NetError::ConnectionReset),
                    );
                }
                if !socket.may_recv() {
                    return Poll::Ready(Ok(0));
                }
                socket.register_recv_waker(cx.waker());
                Poll::Pending
            })
        })
        .await
    }

    /// Writes some of `buf`, waiting for room in the send buffer.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        poll_fn(|cx| {
            self.with(|socket| {
                if !socket.may_send() {
                    return Poll::Ready(Err(NetError::Closed));
                }
                if socket.can_send() {
                    return Poll::Ready(socket.send_slice(buf).map_err(|_| NetError::Closed));
                }
                socket.register_send_waker(cx.waker());
                Poll::Pending
            })
        })
        .await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> Result<(), NetError> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = buf.get(n..).unwrap_or_default();
        }
        Ok(())
    }

    /// Waits until everything written has been acknowledged by the peer.
    pub async fn flush(&mut self) -> Result<(), NetError> {
        poll_fn(|cx| {
            self.with(|socket| {
                if socket.send_queue() == 0 {
                    return Poll::Ready(Ok(()));
                }
                if !socket.is_open() {
                    return Poll::Ready(Err(NetError::ConnectionReset));
                }
                socket.register_send_waker(cx.waker());
                Poll::Pending
            })
        })
        .await
    }

    /// Closes the sending side (sends FIN after the pending data).
    pub fn shutdown(&mut self) {
        let _ = self.with(|socket| {
            socket.close();
            Poll::Ready(Ok(()))
        });
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let _ = with_stack(|stack| stack.release_tcp(self.handle));
    }
}
