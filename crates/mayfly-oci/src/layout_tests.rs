//! The image-layout tar's blobs match their digests, and a bundle made from the image reads back
//! the same settings.

use super::*;
use crate::read_bundle;
use std::collections::BTreeMap;
use std::io::Read;

fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(path, bytes);
    }
    out
}

fn settings() -> Settings {
    Settings {
        memory_mib: 32,
        guest_port: Some(8080),
        args: vec!["a b".into(), "c".into()],
        env: vec![("GREETING".into(), "hi=there".into())],
        network: Some(true),
    }
}

fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, digest: &str) -> &'a [u8] {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = &files[&format!("blobs/sha256/{hex}")];
    let actual: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(actual, hex, "blob {digest} does not match its digest");
    bytes
}

#[test]
fn the_layout_is_consistent_and_a_bundle_reads_the_settings_back() {
    let settings = settings();
    let request = ImageRequest {
        unikernel: b"\x7fELF-not-really",
        settings: &settings,
        reference: "mayfly.local/hello:v1",
    };
    let mut tar_bytes = Vec::new();
    let written = write_image(&request, &mut tar_bytes).unwrap();
    let files = entries(&tar_bytes);
    assert!(files.contains_key("oci-layout"));
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], written.manifest_digest.as_str());
    assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "v1");
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(&files, &written.manifest_digest)).unwrap();
    assert_eq!(manifest["annotations"]["io.mayfly.memory-mib"], "32");
    assert_eq!(manifest["annotations"]["io.mayfly.guest-port"], "8080");
    let config: serde_json::Value =
        serde_json::from_slice(blob(&files, manifest["config"]["digest"].as_str().unwrap()))
            .unwrap();
    assert_eq!(config["config"]["Entrypoint"][0], "/mayfly/image");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["a b", "c"]));
    assert_eq!(config["config"]["Env"], serde_json::json!(["GREETING=hi=there"]));
    let layer = blob(&files, manifest["layers"][0]["digest"].as_str().unwrap());
    assert_eq!(config["rootfs"]["diff_ids"][0], manifest["layers"][0]["digest"]);

    // A bundle as containerd makes it: the layer unpacked as rootfs, config.json from the image.
    let bundle = std::env::temp_dir().join(format!("mayfly-oci-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&bundle);
    tar::Archive::new(layer).unpack(bundle.join("rootfs")).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/mayfly/image", "x"],
                    "env": ["PATH=/bin", "GREETING=hi=there"]},
        "linux": {"resources": {"memory": {"limit": 104_857_601}}}
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let launch = read_bundle(&bundle).unwrap();
    assert_eq!(std::fs::read(&launch.unikernel).unwrap(), b"\x7fELF-not-really");
    assert_eq!(launch.memory_mib, 102, "100 MiB + 1 byte rounds up to 102 MiB");
    assert_eq!(launch.guest_port, Some(8080));
    assert_eq!(launch.args, ["x"]);
    assert_eq!(launch.env[1], ("GREETING".to_owned(), "hi=there".to_owned()));

    let other = serde_json::json!({"ociVersion": "1.0.2", "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["/hello"]}});
    std::fs::write(bundle.join("config.json"), other.to_string()).unwrap();
    let error = read_bundle(&bundle).unwrap_err().to_string();
    assert!(error.starts_with("not a Mayfly image"), "{error}");
    std::fs::remove_dir_all(&bundle).unwrap();
}

#[test]
fn bad_names_and_settings_are_refused() {
    let settings = settings();
    for reference in ["hello", "Mayfly.local/Hello:latest", "mayfly.local/hello"] {
        let request = ImageRequest { unikernel: b"x", settings: &settings, reference };
        assert!(write_image(&request, Vec::new()).is_err(), "{reference} accepted");
    }
    let odd = Settings { memory_mib: 5, ..settings };
    let request = ImageRequest { unikernel: b"x", settings: &odd, reference: "localhost/a:b" };
    assert!(write_image(&request, Vec::new()).is_err());
}
