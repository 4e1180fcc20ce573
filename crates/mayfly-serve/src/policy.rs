//! What the admin token may do: an admin token is not a shell. Services from the configuration
//! file are trusted; a spec deployed through the admin API may only name a `crate` under a
//! `[gateway] build_roots` directory (building runs its build scripts on this host) and an
//! `image` under an image root (`[gateway] image_roots`, plus the directories of the file's own
//! images), and grant only the host ports in `[gateway] api_host_ports`. Every deploy, from the file or the API, stays within `[gateway] memory_budget_mib`.

use crate::config::{GatewayConfig, ServiceSpec};
use std::path::{Component, Path, PathBuf};

/// The admin API's limits, fixed at start from the configuration file.
#[derive(Debug)]
pub struct ApiPolicy {
    build_roots: Vec<PathBuf>,
    image_roots: Vec<PathBuf>,
    host_ports: Vec<u16>,
    memory_budget_mib: u64,
    /// API deploys one at a time, so that two cannot both fit the budget's last room.
    pub deploys: tokio::sync::Mutex<()>,
}

/// Guest memory a service may reserve, MiB: `mem_mib * (max_instances + warm_shells)`.
pub fn reserved_mib(spec: &ServiceSpec) -> u64 {
    spec.mem_mib.saturating_mul(u64::from(spec.max_instances) + u64::from(spec.warm_shells))
}

/// Resolves a root (roots that do not exist yet stay as given).
fn real(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `path` is absolute, free of `..`, and, resolved (links followed), under one of
/// `roots`. A path that does not exist is judged as written (the deploy then says it is missing).
fn under(path: &Path, roots: &[PathBuf]) -> bool {
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return false;
    }
    let inside = |p: &Path| roots.iter().any(|root| p.starts_with(root));
    match std::fs::canonicalize(path) {
        Ok(resolved) => inside(&resolved),
        Err(_) => inside(path),
    }
}

impl ApiPolicy {
    /// The policy of `gateway`; the directories of `file_services`' images are image roots.
    pub fn new(gateway: &GatewayConfig, file_services: &[ServiceSpec]) -> ApiPolicy {
        let own_images = file_services
            .iter()
            .filter_map(|s| s.image.as_deref()?.parent().map(Path::to_path_buf))
            .filter(|dir| dir.is_absolute());
        ApiPolicy {
            build_roots: gateway.build_roots.iter().map(|r| real(r)).collect(),
            image_roots: gateway
                .image_roots
                .iter()
                .cloned()
                .chain(own_images)
                .map(|r| real(&r))
                .collect(),
            host_ports: gateway.api_host_ports.clone(),
            memory_budget_mib: gateway.memory_budget_mib,
            deploys: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether `spec`, deployed through the admin API, names only paths it may.
    pub fn admit(&self, spec: &ServiceSpec) -> Result<(), String> {
        let name = &spec.name;
        if let Some(krate) = &spec.guest_crate
            && !under(krate, &self.build_roots)
        {
            return Err(format!(
                "service {name:?}: `crate` {} is not under a build root; deploys through the \
                 admin API take images, or crates under `build_roots` in the gateway's [gateway] \
                 configuration (an absolute path without `..`)",
                krate.display()
            ));
        }
        if let Some(image) = &spec.image
            && !under(image, &self.image_roots)
        {
            return Err(format!(
                "service {name:?}: `image` {} is not under an image root; put it under one of \
                 `image_roots` in the gateway's [gateway] configuration (an absolute path \
                 without `..`)",
                image.display()
            ));
        }
        if let Some(volume) = &spec.volume
            && !volume.is_contained()
        {
            return Err(format!(
                "service {name:?}: volume `path` {} must be a relative name without `..`: \
                 volumes deployed through the admin API live in the gateway's volume directory",
                volume.path.display()
            ));
        }
        if let Some(port) = spec.allow_host_ports.iter().find(|p| !self.host_ports.contains(p)) {
            return Err(format!(
                "service {name:?}: `allow_host_ports` names host port {port}, which deploys \
                 through the admin API may not grant; list it in `api_host_ports` in the \
                 gateway's [gateway] configuration"
            ));
        }
        Ok(())
    }

    /// Whether `specs` together fit the memory budget.
    pub fn fits<'a>(&self, specs: impl IntoIterator<Item = &'a ServiceSpec>) -> Result<(), String> {
        let total = specs.into_iter().map(reserved_mib).fold(0u64, u64::saturating_add);
        if total > self.memory_budget_mib {
            return Err(format!(
                "the services would reserve {total} MiB of guest memory (mem_mib * \
                 (max_instances + warm_shells), summed), above the gateway's budget of {} MiB; \
                 lower them or raise `memory_budget_mib` in [gateway]",
                self.memory_budget_mib
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(build: &[&str], image: &[&str], budget: u64) -> ApiPolicy {
        let gateway = GatewayConfig {
            build_roots: build.iter().map(PathBuf::from).collect(),
            image_roots: image.iter().map(PathBuf::from).collect(),
            memory_budget_mib: budget,
            ..GatewayConfig::default()
        };
        ApiPolicy::new(&gateway, &[])
    }

    fn spec(image: Option<&str>, krate: Option<&str>) -> ServiceSpec {
        let mut spec = ServiceSpec::new("x", "/".into(), "/x");
        spec.guest_crate = krate.map(PathBuf::from);
        spec.image = image.map(PathBuf::from);
        spec
    }

    #[test]
    fn api_crates_need_a_build_root_and_images_an_image_root() {
        let none = policy(&[], &[], 1 << 20);
        assert!(none.admit(&spec(None, Some("/srv/app"))).unwrap_err().contains("build root"));
        assert!(none.admit(&spec(Some("/srv/a.img"), None)).unwrap_err().contains("image root"));
        let roots = policy(&["/srv/src"], &["/srv/img"], 1 << 20);
        assert!(roots.admit(&spec(None, Some("/srv/src/app"))).is_ok());
        assert!(roots.admit(&spec(Some("/srv/img/a.img"), None)).is_ok());
        for escape in ["/srv/img/../etc/passwd", "srv/img/a.img", "/srv/imgx/a.img"] {
            assert!(roots.admit(&spec(Some(escape), None)).is_err(), "{escape}");
        }
        assert!(roots.admit(&spec(None, Some("/srv/src/../../root"))).is_err());
    }

    #[test]
    fn api_host_ports_must_be_listed() {
        let mut db = spec(Some("/srv/img/a.img"), None);
        db.allow_host_ports = vec![5432];
        let none = policy(&[], &["/srv/img"], 1 << 20);
        assert!(none.admit(&db).unwrap_err().contains("host port 5432"));
        let gateway = GatewayConfig {
            image_roots: vec!["/srv/img".into()],
            api_host_ports: vec![5432],
            ..GatewayConfig::default()
        };
        let listed = ApiPolicy::new(&gateway, &[]);
        assert!(listed.admit(&db).is_ok());
        db.allow_host_ports.push(22);
        assert!(listed.admit(&db).unwrap_err().contains("host port 22"));
    }

    #[test]
    fn a_link_out_of_an_image_root_is_refused() {
        let dir = std::env::temp_dir().join(format!("mayfly-policy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("secret"), "").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), dir.join("img/a.img")).unwrap();
        let roots = policy(&[], &[dir.join("img").to_str().unwrap()], 1 << 20);
        let link = dir.join("img/a.img");
        assert!(roots.admit(&spec(Some(link.to_str().unwrap()), None)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_memory_budget_counts_instances_and_shells() {
        let mut a = spec(Some("/a"), None);
        (a.mem_mib, a.max_instances, a.warm_shells) = (32, 3, 1);
        assert_eq!(reserved_mib(&a), 128);
        assert!(policy(&[], &[], 256).fits([&a, &a]).is_ok());
        let error = policy(&[], &[], 255).fits([&a, &a]).unwrap_err();
        assert!(error.contains("256 MiB") && error.contains("255 MiB"), "{error}");
    }
}
