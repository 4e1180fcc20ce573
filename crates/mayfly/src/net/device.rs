//! The smoltcp device over the NIC's rings: frames are read from and written into the ring
//! slots in place, without copies.

use crate::platform::nic;
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The NIC, as smoltcp sees it.
pub struct RingDevice;

/// A received frame, read when consumed.
pub struct RxToken;
/// Room for a frame to send.
pub struct TxToken;

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        nic::rx_consume(f)
    }
}

impl phy::TxToken for TxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        nic::tx_produce(len, f)
    }
}

impl phy::Device for RingDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken)> {
        (nic::rx_pending() > 0 && nic::tx_has_room()).then_some((RxToken, TxToken))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken> {
        nic::tx_has_room().then_some(TxToken)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 14 + crate::platform::boot_info().net.mtu as usize;
        caps.max_burst_size = Some(mayfly_abi::net::RING_SLOTS as usize / 2);
        caps
    }
}
