//! One module per subcommand: parse arguments, call the library, map the result to an exit code.

pub mod admin_client;
pub mod build;
pub mod image;
pub mod run;
pub mod serve;

/// Exit status when mayfly itself fails (bad input, no KVM, build failure), as `docker run`.
pub const EXIT_MAYFLY_ERROR: u8 = 125;
