//! The argument block handed to the guest: arguments then environment, NUL-terminated each.

use mayfly_abi::boot::ARGS_MAX;

/// The arguments and environment do not fit the boot-info region.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("guest arguments and environment take {0} bytes; the limit is {ARGS_MAX}")]
    TooLong(usize),
    #[error("guest argument or environment entry contains a NUL byte: {0:?}")]
    Nul(String),
    #[error("environment variable name {0:?} is empty or contains '='")]
    BadName(String),
}

/// An encoded argument block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsBlock {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Number of arguments.
    pub argc: u32,
    /// Number of environment entries.
    pub envc: u32,
}

impl ArgsBlock {
    /// Encodes `args` (the first being the program name) and `env`.
    pub fn encode(args: &[String], env: &[(String, String)]) -> Result<ArgsBlock, ArgsError> {
        let mut bytes = Vec::new();
        for arg in args {
            push_entry(&mut bytes, arg)?;
        }
        for (name, value) in env {
            if name.is_empty() || name.contains('=') {
                return Err(ArgsError::BadName(name.clone()));
            }
            push_entry(&mut bytes, &format!("{name}={value}"))?;
        }
        if bytes.len() > ARGS_MAX {
            return Err(ArgsError::TooLong(bytes.len()));
        }
        let count = |n: usize| u32::try_from(n).map_err(|_| ArgsError::TooLong(bytes.len()));
        Ok(ArgsBlock { argc: count(args.len())?, envc: count(env.len())?, bytes })
    }
}

fn push_entry(bytes: &mut Vec<u8>, entry: &str) -> Result<(), ArgsError> {
    if entry.contains('\0') {
        return Err(ArgsError::Nul(entry.to_owned()));
    }
    bytes.extend_from_slice(entry.as_bytes());
    bytes.push(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_args_then_env() {
        let block = ArgsBlock::encode(&["hello".into(), "7".into()], &[("A".into(), "b=c".into())])
            .unwrap();
        assert_eq!(block.bytes, b"hello\x007\x00A=b=c\x00");
        assert_eq!((block.argc, block.envc), (2, 1));
    }

    #[test]
    fn refuses_oversized_or_malformed_input() {
        let long = vec!["x".repeat(ARGS_MAX)];
        assert!(matches!(ArgsBlock::encode(&long, &[]), Err(ArgsError::TooLong(_))));
        assert!(matches!(ArgsBlock::encode(&["a\0b".into()], &[]), Err(ArgsError::Nul(_))));
        let bad = [("A=B".to_string(), "x".to_string())];
        assert!(matches!(ArgsBlock::encode(&[], &bad), Err(ArgsError::BadName(_))));
    }
}
