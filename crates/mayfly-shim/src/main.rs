//! `containerd-shim-mayfly-v2`: started by containerd for runtime `io.containerd.mayfly.v2`.
//! `containerd-shim-mayfly-v2 hold BUNDLE` is the shim's own pod holder (see `pod_net`).

fn main() {
    if std::env::args().nth(1).as_deref() == Some(mayfly_shim::HOLD) {
        mayfly_shim::hold();
    }
    containerd_shim::run::<mayfly_shim::Shim>(mayfly_shim::RUNTIME_ID, None)
}
