//! The admin token: generated from `getrandom(2)` (or taken from the configuration, at least
//! [`MIN_TOKEN_LEN`] characters) and written where the admin CLI finds it, without following
//! links or trusting a file or directory someone else could have prepared.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The shortest admin token accepted from a configuration file.
pub const MIN_TOKEN_LEN: usize = 32;

/// Why the admin token could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "cannot get random bytes for the admin token (getrandom: {0}); the gateway will not start with a guessable token"
    )]
    Random(std::io::Error),
    #[error(
        "`admin_token` in [gateway] is {0} characters; use at least {MIN_TOKEN_LEN} (e.g. the \
         output of `head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n'`), or remove it to get a random one"
    )]
    TooShort(usize),
    #[error("cannot write the admin token to {path}: {cause}")]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("refusing to write the admin token to {path}: {why}")]
    Unsafe { path: PathBuf, why: String },
}

/// A random token: 24 bytes from `getrandom(2)`, as 48 hex digits.
pub fn random_token() -> Result<String, TokenError> {
    let mut bytes = [0u8; 24];
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        match crate::sys::getrandom(rest) {
            Ok(n) => filled += n,
            Err(error) => {
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(TokenError::Random(error));
                }
            }
        }
    }
    if bytes.iter().all(|b| *b == 0) {
        return Err(TokenError::Random(std::io::Error::other("it returned only zeros")));
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token to use: the configured one if long enough, else a random one.
pub fn choose(configured: Option<&str>) -> Result<String, TokenError> {
    match configured {
        Some(token) if token.chars().count() < MIN_TOKEN_LEN => {
            Err(TokenError::TooShort(token.chars().count()))
        }
        Some(token) => Ok(token.to_owned()),
        None => random_token(),
    }
}

/// Writes `token` to `dir/admin-token`: `dir` is created 0700 if missing and must be owned by
/// us and writable by no one else; an existing token file must be a regular file of ours that
/// only we can read (it is then replaced); the new file is created with
/// `O_EXCL | O_NOFOLLOW`, mode 0600.
pub fn write(dir: &Path, token: &str) -> Result<PathBuf, TokenError> {
    let path = dir.join("admin-token");
    let unsafe_because = |why: String| TokenError::Unsafe { path: path.clone(), why };
    let fail = |cause| TokenError::Write { path: path.clone(), cause };
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(fail)?;
    let me = crate::sys::effective_uid();
    let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
    if !meta.is_dir() {
        return Err(unsafe_because(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != me {
        return Err(unsafe_because(format!(
            "{} belongs to user {}, not to us ({me}); set $MAYFLY_STATE_DIR to a directory of ours",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "others may write to {}; `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    match std::fs::symlink_metadata(&path) {
        Ok(old) => {
            if !old.is_file() {
                return Err(unsafe_because(
                    "it exists and is not a regular file (a link?); remove it".into(),
                ));
            }
            if old.uid() != me || old.permissions().mode() & 0o077 != 0 {
                return Err(unsafe_because(format!(
                    "the existing file is readable or writable by others (mode {:o}, owner {}); \
                     remove it",
                    old.permissions().mode() & 0o777,
                    old.uid()
                )));
            }
            std::fs::remove_file(&path).map_err(fail)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(fail)?;
    file.write_all(token.as_bytes()).map_err(fail)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mayfly-token-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_state_directory_is_0700_and_the_file_0600() {
        let dir = scratch("new").join("state");
        let path = write(&dir, "x".repeat(40).as_str()).unwrap();
        assert_eq!((mode(&dir), mode(&path)), (0o700, 0o600));
        // Written again (a restart): replaced, same modes.
        let path = write(&dir, "y".repeat(40).as_str()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "y".repeat(40));
        assert_eq!(mode(&path), 0o600);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn an_existing_file_others_can_read_is_refused() {
        let dir = scratch("loose");
        write(&dir, "a").unwrap();
        let path = dir.join("admin-token");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = write(&dir, "b").unwrap_err().to_string();
        assert!(error.contains("readable or writable by others"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a", "the file was touched");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_link_in_place_of_the_file_is_refused() {
        let dir = scratch("link");
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        std::fs::write(&target, "").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("admin-token")).unwrap();
        let error = write(&dir, "b").unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "", "written through the link");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = scratch("open-dir");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = write(&dir, "b").unwrap_err().to_string();
        assert!(error.contains("others may write"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tokens_are_random_and_configured_ones_long() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 48);
        assert_ne!(a, b);
        assert!(a.bytes().any(|c| c != b'0'));
        let short = choose(Some("test-token")).unwrap_err().to_string();
        assert!(short.contains("at least 32"), "{short}");
        assert_eq!(choose(Some(&"k".repeat(32))).unwrap(), "k".repeat(32));
        assert_eq!(choose(None).unwrap().len(), 48);
    }
}
