//! Where `mayfly serve` reaches its instances: Unix sockets in one private directory per
//! gateway, so that no other local user can connect to an instance around the gateway.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The gateway's private directory for its instances' sockets: created 0700 (only the
/// gateway's user may enter it, so no other local user can connect to an instance around the
/// gateway), under `$XDG_RUNTIME_DIR` if set, else the temporary directory; removed by
/// [`remove_socket_dir`] at shutdown.
pub fn socket_dir() -> std::io::Result<PathBuf> {
    let mut dir = SOCKET_DIR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = dir.as_ref() {
        return Ok(dir.clone());
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).filter(|d| d.is_dir());
    let created = match runtime.map(|base| create_private_dir(&base)) {
        Some(Ok(created)) => created,
        // No usable runtime directory: the temporary directory.
        _ => create_private_dir(&std::env::temp_dir())?,
    };
    *dir = Some(created.clone());
    Ok(created)
}

/// The socket directory, once created (one per gateway process).
static SOCKET_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Creates a fresh directory under `base`, 0700 from the start (no window with looser rights);
/// fails if anything already has its name.
fn create_private_dir(base: &Path) -> std::io::Result<PathBuf> {
    // Hard to guess, so that nobody can take the name first.
    let nonce =
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0);
    let dir = base.join(format!("mayfly-serve-{}-{:016x}", std::process::id(), nonce));
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir)?;
    Ok(dir)
}

/// Removes the socket directory (and any socket a killed monitor left), if it was created.
pub fn remove_socket_dir() {
    let dir = SOCKET_DIR.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes a published socket file a monitor left behind (it removes its own at a normal exit;
/// a killed one cannot).
pub fn remove_socket(path: Option<&Path>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::create_private_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_directories_are_0700_and_fresh() {
        let base = std::env::temp_dir();
        let dir = create_private_dir(&base).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
        // An existing name is never reused (as another user's directory might be).
        assert!(std::fs::DirBuilder::new().create(&dir).is_err());
        std::fs::remove_dir(&dir).unwrap();
    }
}
