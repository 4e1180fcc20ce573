//! `mayfly image <crate dir | image> -o app.tar [--name REF] [--port N] [--mem MiB] [-e K=V]... [-- args...]`

use anyhow::{Context, Result};
use mayfly_oci::{ImageRequest, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

/// Package a unikernel as an OCI image (an image-layout tar for `ctr images import`, `skopeo`).
#[derive(clap::Args)]
pub struct Args {
    /// The image (built by `mayfly build`), or a guest crate's directory to build first.
    image: PathBuf,
    /// Write the OCI image-layout tar here.
    #[arg(short, long)]
    output: PathBuf,
    /// The image's name (default: mayfly.local/<name>:latest).
    #[arg(long, value_name = "HOST/NAME:TAG")]
    name: Option<String>,
    /// The TCP port the guest serves on (recorded in the image as its exposed port).
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Guest memory in MiB (a multiple of 2, from 4 to 4096); a container's memory limit wins.
    #[arg(long, default_value_t = 64, value_name = "MiB")]
    mem: u64,
    /// An environment entry for the guest (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = super::run::parse_env)]
    env: Vec<(String, String)>,
    /// Arguments for the guest (the image's Cmd).
    #[arg(last = true)]
    guest_args: Vec<String>,
}

pub fn execute(args: Args) -> Result<ExitCode> {
    let unikernel = super::run::resolve_image(&args.image)?;
    let bytes = super::run::read_image(&unikernel)?;
    let stem = args.image.file_stem().map_or("app".into(), |s| s.to_string_lossy().into_owned());
    let reference = args.name.unwrap_or_else(|| mayfly_oci::default_reference(&stem));
    let settings = Settings {
        memory_mib: args.mem,
        guest_port: args.port,
        args: args.guest_args,
        env: args.env,
        network: mayfly_monitor::Image::parse(&bytes)
            .ok()
            .map(|image| image.manifest.wants(mayfly_abi::manifest::Device::Net)),
    };
    let request = ImageRequest { unikernel: &bytes, settings: &settings, reference: &reference };
    // Written beside the output and renamed: a failed run leaves no half-written tar.
    let partial = args.output.with_extension("tar.partial");
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let written = match mayfly_oci::write_image(&request, std::io::BufWriter::new(file)) {
        Ok(written) => written,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    std::fs::rename(&partial, &args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    println!("{} {}", written.reference, written.manifest_digest);
    println!("{}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
