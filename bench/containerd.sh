#!/usr/bin/env bash
# `ctr run --rm` of hello under a private containerd 1.6: Mayfly's shim (examples/hello) against
# runc running bench/native-hello (the same work as a static Linux program) from an equivalent
# image (one layer, one file, scratch root). hyperfine runs each side RUNS times (Mayfly's first,
# then runc's, after 3 warm-ups each); the medians are printed last. Needs root, containerd,
# ctr, runc, hyperfine. Usage: bench/containerd.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${1:-30}
bin=$root/target/x86_64-unknown-linux-gnu/release
cargo build --release -q -p mayfly-cli -p mayfly-shim
CARGO_ENCODED_RUSTFLAGS=-Ctarget-feature=+crt-static cargo build --release -q \
  --manifest-path bench/native-hello/Cargo.toml --target x86_64-unknown-linux-gnu \
  --target-dir "$root/target/native"
native=$root/target/native/x86_64-unknown-linux-gnu/release/native-hello

work=$(mktemp -d /tmp/mayfly-ctd-bench.XXXXXX)
cleanup() {
  [ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null && sleep 1
  grep -o "$work[^ ]*" /proc/self/mounts | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/mayfly" image "$root/examples/hello" -o "$work/mayfly.tar" --name mayfly.local/hello:bench >/dev/null

# The runc image: /hello on a scratch root, written as an OCI layout like `mayfly image` does.
python3 - "$native" "$work/native.tar" <<'PY'
import hashlib, io, json, sys, tarfile
src, out = sys.argv[1], sys.argv[2]
def tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data, mode in files:
            info = tarfile.TarInfo(name); info.size = len(data); info.mode = mode
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
layer = tar_bytes([("hello", open(src, "rb").read(), 0o755)])
sha = lambda b: hashlib.sha256(b).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Entrypoint": ["/hello"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(layer)]}}).encode()
desc = lambda mt, b: {"mediaType": mt, "digest": "sha256:" + sha(b), "size": len(b)}
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": desc("application/vnd.oci.image.config.v1+json", config),
    "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer)]}).encode()
m = desc("application/vnd.oci.image.manifest.v1+json", manifest)
m["annotations"] = {"io.containerd.image.name": "mayfly.local/native-hello:bench",
                    "org.opencontainers.image.ref.name": "bench"}
index = json.dumps({"schemaVersion": 2, "manifests": [m]}).encode()
files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644), ("index.json", index, 0o644)]
files += [("blobs/sha256/" + sha(b), b, 0o644) for b in (layer, config, manifest)]
open(out, "wb").write(tar_bytes(files))
PY

cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
TOML
PATH="$bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
echo $! >"$work/pid"
ctr="ctr --address $work/containerd.sock"
for _ in $(seq 200); do $ctr version >/dev/null 2>&1 && break; sleep 0.05; done
$ctr images import "$work/mayfly.tar" >/dev/null
$ctr images import "$work/native.tar" >/dev/null

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
echo "containerd: $(containerd --version | cut -d' ' -f3), runc: $(runc --version | head -1 | cut -d' ' -f3)"
# Each run is its own `sh -c`, so `$$` gives each container a fresh id (hyperfine subtracts the
# shell's own start-up).
hyperfine --warmup 3 --runs "$runs" \
  -n "mayfly (io.containerd.mayfly.v2, examples/hello)" \
  "$ctr run --rm --runtime io.containerd.mayfly.v2 mayfly.local/hello:bench m\$\$ >/dev/null" \
  -n "runc (io.containerd.runc.v2, static native-hello)" \
  "$ctr run --rm --runtime io.containerd.runc.v2 mayfly.local/native-hello:bench r\$\$ >/dev/null" \
  --export-json "$work/hyperfine.json"
python3 - "$work/hyperfine.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for r in results:
    print(f"median {r['median'] * 1000:.1f} ms  {r['command']}")
print(f"ratio mayfly/runc (medians): {results[0]['median'] / results[1]['median']:.2f}")
PY
