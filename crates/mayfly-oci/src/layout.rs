//! Writing an OCI image-layout tar (`oci-layout`, `index.json`, `blobs/sha256/…`).

use crate::{SETTINGS_PATH, Settings, UNIKERNEL_PATH, keys};
use anyhow::{Context, Result, bail};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder, SCHEMA_VERSION, Sha256Digest,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;

/// What to put in the image.
pub struct ImageRequest<'a> {
    /// The unikernel (an image built by `mayfly build`).
    pub unikernel: &'a [u8],
    /// Mayfly's settings for it.
    pub settings: &'a Settings,
    /// The image's name, e.g. `mayfly.local/hello:latest` (recorded in `index.json`).
    pub reference: &'a str,
}

/// What was written.
#[derive(Debug)]
pub struct WrittenImage {
    /// The manifest's digest (`sha256:…`), as `skopeo inspect` shows it.
    pub manifest_digest: String,
    /// The image's name.
    pub reference: String,
}

/// The default name of an image made from `stem` (a crate's or image file's name).
pub fn default_reference(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    format!("mayfly.local/{}:latest", if name.is_empty() { "app" } else { name })
}

/// Checks a reference: `host/path:tag`, lowercase path, as containerd wants a full one.
fn check_reference(reference: &str) -> Result<()> {
    let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, ""));
    let host = repo.split('/').next().unwrap_or_default();
    let ok_tag = !tag.is_empty()
        && tag.len() <= 128
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let ok_repo = repo.contains('/')
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    if !ok_tag || !ok_repo {
        bail!(
            "{reference:?} is not a full image name: write HOST/NAME:TAG in lowercase, e.g. \
             mayfly.local/hello:latest"
        );
    }
    Ok(())
}

fn check_settings(settings: &Settings) -> Result<()> {
    let mem = settings.memory_mib;
    if !(4..=4096).contains(&mem) || !mem.is_multiple_of(2) {
        bail!("memory {mem} MiB: give a multiple of 2 from 4 to 4096");
    }
    if settings.guest_port == Some(0) {
        bail!("the guest port must not be 0");
    }
    for (key, _) in &settings.env {
        if key.is_empty() || key.contains('=') {
            bail!("environment entry {key:?}: a name must be non-empty and without `=`");
        }
    }
    Ok(())
}

/// One blob: its bytes and `sha256:` digest.
struct Blob {
    bytes: Vec<u8>,
    hex: String,
}

impl Blob {
    fn new(bytes: Vec<u8>) -> Blob {
        let hex = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        Blob { bytes, hex }
    }

    fn descriptor(&self, media_type: MediaType) -> Result<Descriptor> {
        let digest = Sha256Digest::from_str(&self.hex).context("sha256 digest")?;
        Ok(Descriptor::new(media_type, self.bytes.len() as u64, digest))
    }
}

fn tar_header(path: &str, size: u64, mode: u32, kind: tar::EntryType) -> Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}

/// Appends a regular file (mode `mode`) to a tar.
fn append_file<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<()> {
    let header = tar_header(path, bytes.len() as u64, mode, tar::EntryType::Regular)?;
    tar.append(&header, bytes)?;
    Ok(())
}

/// The layer: `/mayfly/` with the unikernel and the settings file (uncompressed tar).
fn layer(request: &ImageRequest<'_>) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let dir = tar_header("mayfly/", 0, 0o755, tar::EntryType::Directory)?;
    tar.append(&dir, std::io::empty())?;
    let unikernel = UNIKERNEL_PATH.trim_start_matches('/');
    append_file(&mut tar, unikernel, request.unikernel, 0o755)?;
    let settings = serde_json::to_vec_pretty(request.settings)?;
    append_file(&mut tar, SETTINGS_PATH.trim_start_matches('/'), &settings, 0o644)?;
    Ok(tar.into_inner()?)
}

/// `io.mayfly.*` entries, for labels and annotations alike.
fn mayfly_keys(settings: &Settings) -> HashMap<String, String> {
    let mut map = HashMap::new();
    map.insert(keys::MEMORY_MIB.to_owned(), settings.memory_mib.to_string());
    map.insert(keys::UNIKERNEL.to_owned(), UNIKERNEL_PATH.to_owned());
    if let Some(port) = settings.guest_port {
        map.insert(keys::GUEST_PORT.to_owned(), port.to_string());
    }
    map
}

/// Writes the image as an OCI image-layout tar to `out`.
pub fn write_image<W: Write>(request: &ImageRequest<'_>, out: W) -> Result<WrittenImage> {
    check_reference(request.reference)?;
    check_settings(request.settings)?;
    if request.unikernel.is_empty() {
        bail!("the unikernel is empty: give an image built by `mayfly build`");
    }
    let settings = request.settings;
    let layer = Blob::new(layer(request)?);
    let env: Vec<String> = settings.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut config = ConfigBuilder::default()
        .entrypoint(vec![UNIKERNEL_PATH.to_owned()])
        .cmd(settings.args.clone())
        .env(env)
        .labels(mayfly_keys(settings));
    if let Some(port) = settings.guest_port {
        config = config.exposed_ports(vec![format!("{port}/tcp")]);
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![format!("sha256:{}", layer.hex)])
        .build()?;
    let image_config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(rootfs)
        .build()?;
    let config_blob = Blob::new(image_config.to_string()?.into_bytes());
    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config_blob.descriptor(MediaType::ImageConfig)?)
        .layers(vec![layer.descriptor(MediaType::ImageLayer)?])
        .annotations(mayfly_keys(settings))
        .build()?;
    let manifest_blob = Blob::new(manifest.to_string()?.into_bytes());
    let mut manifest_descriptor = manifest_blob.descriptor(MediaType::ImageManifest)?;
    let tag = request.reference.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    manifest_descriptor.set_annotations(Some(HashMap::from([
        ("org.opencontainers.image.ref.name".to_owned(), tag.to_owned()),
        ("io.containerd.image.name".to_owned(), request.reference.to_owned()),
    ])));
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()?;
    let mut index_bytes = Vec::new();
    index.to_writer(&mut index_bytes)?;

    let mut tar = tar::Builder::new(out);
    append_file(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    append_file(&mut tar, "index.json", &index_bytes, 0o644)?;
    for dir in ["blobs/", "blobs/sha256/"] {
        let header = tar_header(dir, 0, 0o755, tar::EntryType::Directory)?;
        tar.append(&header, std::io::empty())?;
    }
    for blob in [&layer, &config_blob, &manifest_blob] {
        append_file(&mut tar, &format!("blobs/sha256/{}", blob.hex), &blob.bytes, 0o644)?;
    }
    tar.into_inner()?.flush()?;
    Ok(WrittenImage {
        manifest_digest: format!("sha256:{}", manifest_blob.hex),
        reference: request.reference.to_owned(),
    })
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
