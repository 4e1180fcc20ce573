//! UDP: datagrams to and from any address.

use super::{NetError, with_stack};
use alloc::vec;
use core::future::poll_fn;
use core::task::Poll;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{self, PacketBuffer, PacketMetadata, Socket};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

const PACKETS: usize = 16;
const BUFFER: usize = 16 * 1024;

/// A UDP socket bound to a local port.
pub struct UdpSocket {
    handle: SocketHandle,
}

impl UdpSocket {
    /// Binds `port` (0: an ephemeral port).
    pub fn bind(port: u16) -> Result<UdpSocket, NetError> {
        with_stack(|stack| {
            if !stack.has_room() {
                return Err(NetError::TooManySockets);
            }
            let mut socket = Socket::new(
                PacketBuffer::new(vec![PacketMetadata::EMPTY; PACKETS], vec![0; BUFFER]),
                PacketBuffer::new(vec![PacketMetadata::EMPTY; PACKETS], vec![0; BUFFER]),
            );
            let port = if port == 0 { stack.ephemeral_port() } else { port };
            socket.bind(port).map_err(|_| NetError::AddrInUse)?;
            Ok(UdpSocket { handle: stack.sockets.add(socket) })
        })?
    }

    /// Sends `data` to `addr:port`, waiting for buffer room.
    pub async fn send_to(&self, data: &[u8], addr: [u8; 4], port: u16) -> Result<(), NetError> {
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::from(addr)), port);
        poll_fn(|cx| {
            with_stack(|stack| {
                let socket = stack.sockets.get_mut::<Socket>(self.handle);
                match socket.send_slice(data, endpoint) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(udp::SendError::BufferFull) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(udp::SendError::Unaddressable) => {
                        Poll::Ready(Err(NetError::InvalidAddress))
                    }
                }
            })
            .unwrap_or_else(|e| Poll::Ready(Err(e)))
        })
        .await
    }

    /// Whether a receive and a send would complete now; for each that would not, `cx` is
    /// woken when it may (for readiness-based callers such as poll and epoll emulations).
    pub fn poll_ready(&self, cx: &mut core::task::Context<'_>) -> (bool, bool) {
        with_stack(|stack| {
            let socket = stack.sockets.get_mut::<Socket>(self.handle);
            let (readable, writable) = (socket.can_recv(), socket.can_send());
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

    /// Receives a datagram into `buf`: its length and sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, [u8; 4], u16), NetError> {
        poll_fn(|cx| {
            with_stack(|stack| {
                let socket = stack.sockets.get_mut::<Socket>(self.handle);
                match socket.recv_slice(buf) {
                    Ok((n, meta)) => {
                        let IpAddress::Ipv4(addr) = meta.endpoint.addr;
                        Poll::Ready(Ok((n, addr.octets(), meta.endpoint.port)))
                    }
                    Err(_) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                }
            })
            .unwrap_or_else(|e| Poll::Ready(Err(e)))
        })
        .await
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let _ = with_stack(|stack| stack.sockets.remove(self.handle));
    }
}
