//! Why a request was refused, and what to answer.

use core::fmt;

use alloc::format;

use crate::Response;

/// Why a request could not be accepted.
///
/// After an error the connection cannot be resynchronised (the start of the next request is
/// unknown), so the caller should send [`HttpError::response`] with `keep_alive = false` and close
/// the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The request is malformed (bad request line or header, invalid or conflicting framing,
    /// malformed chunk). The text says what was wrong. Status 400.
    BadRequest(&'static str),
    /// The head (request line and header fields, plus any chunked trailer fields) is longer than
    /// [`Limits::max_head_bytes`](crate::Limits::max_head_bytes), or has more than
    /// [`Limits::max_headers`](crate::Limits::max_headers) fields. Status 431.
    HeadersTooLarge,
    /// The body is longer than [`Limits::max_body_bytes`](crate::Limits::max_body_bytes).
    /// Status 413.
    BodyTooLarge,
    /// The request uses a transfer coding other than `chunked`. Status 501.
    UnsupportedTransferEncoding,
}

impl HttpError {
    /// The HTTP status code that answers this error.
    #[must_use]
    pub const fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) => 400,
            HttpError::HeadersTooLarge => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The response to send for this error: its [`status`](Self::status) and a one-line
    /// plain-text body saying what was wrong.
    #[must_use]
    pub fn response(&self) -> Response {
        Response::text(self.status(), &format!("{self}\n"))
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::HeadersTooLarge => f.write_str("request head too large"),
            HttpError::BodyTooLarge => f.write_str("request body too large"),
            HttpError::UnsupportedTransferEncoding => {
                f.write_str("unsupported transfer coding (only chunked is supported)")
            }
        }
    }
}

impl core::error::Error for HttpError {}
