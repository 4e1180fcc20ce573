//! `containerd-shim-mayfly-v2`: started by containerd for runtime `io.containerd.mayfly.v2`.

fn main() {
    containerd_shim::run::<mayfly_shim::Shim>(mayfly_shim::RUNTIME_ID, None)
}
