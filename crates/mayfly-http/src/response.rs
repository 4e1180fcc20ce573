//! Building and encoding responses.

use alloc::{string::String, vec::Vec};

/// The interim response to write when
/// [`RequestParser::take_expect_continue`](crate::RequestParser::take_expect_continue) says the
/// client waits for permission to send its body.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response to encode with [`encode`](Self::encode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code (200, 404, ...). Codes outside 100..=999 are sent as 500.
    pub status: u16,
    /// Header fields to send, in order. `Content-Length`, `Connection` and `Transfer-Encoding`
    /// are written by [`encode`](Self::encode) itself: fields of those names here are not sent.
    /// Neither is a field whose name is not a valid token or whose value holds a control
    /// character other than a tab (which could split the response).
    pub headers: Vec<(String, String)>,
    /// The body. Not sent for statuses that cannot have one (1xx, 204, 304).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status`, no header fields and an empty body.
    #[must_use]
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
    }

    /// A response with `status` and `text` as its body, typed `text/plain; charset=utf-8`.
    #[must_use]
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(text)
    }

    /// A response with `status` and `value` serialized as its body, typed `application/json`.
    ///
    /// # Errors
    /// Whatever serializing `value` fails with (for instance a map whose keys are not strings).
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(
        status: u16,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        let body = serde_json::to_vec(value)?;
        Ok(Response::new(status).with_header("Content-Type", "application/json").with_body(body))
    }

    /// This response with one more header field (added after the others; a field of the same
    /// name is not replaced).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This response with `body` as its body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Appends the whole response to `out`: the status line with the standard reason phrase, the
    /// header fields, `Content-Length` (except for 1xx, 204 and 304), `Connection: keep-alive` or
    /// `Connection: close` as `keep_alive` says, and the body.
    ///
    /// Use [`encode_head`](Self::encode_head) to answer a `HEAD` request.
    pub fn encode(&self, keep_alive: bool, out: &mut Vec<u8>) {
        self.encode_head(keep_alive, out);
        if status_allows_body(self.status_to_send()) {
            out.extend_from_slice(&self.body);
        }
    }

    /// Appends what [`encode`](Self::encode) would, without the body: the answer to a `HEAD`
    /// request (its `Content-Length` is still the length of [`body`](Self::body)).
    pub fn encode_head(&self, keep_alive: bool, out: &mut Vec<u8>) {
        let status = self.status_to_send();
        out.reserve(64 + self.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, usize::from(status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            if is_framing_field(name) || !is_token(name) || !is_field_value(value) {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if status_allows_body(status) {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, self.body.len());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        out.extend_from_slice(b"\r\n");
    }

    /// The status code written on the status line: [`status`](Self::status), or 500 if that is
    /// not a three-digit code.
    fn status_to_send(&self) -> u16 {
        if (100..=999).contains(&self.status) { self.status } else { 500 }
    }
}

/// The standard reason phrase of `status` (`"OK"` for 200, `"Not Found"` for 404, ...), or `""`
/// for a code without one.
#[must_use]
pub const fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether a response with `status` has a body (and so a `Content-Length`).
fn status_allows_body(status: u16) -> bool {
    !(status < 200 || status == 204 || status == 304)
}

/// Whether `name` is a field that [`Response::encode_head`] writes itself.
fn is_framing_field(name: &str) -> bool {
    ["content-length", "connection", "transfer-encoding"]
        .iter()
        .any(|framing| name.eq_ignore_ascii_case(framing))
}

/// Whether `name` is a valid field name (an RFC 9110 token).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` is safe to send as a field value: no control characters but tabs.
fn is_field_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !(b.is_ascii_control()))
}

/// Appends the decimal digits of `n` to `out`.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b"0123456789".get(rest % 10).copied().unwrap_or(b'0');
        }
        rest /= 10;
        if rest == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}
