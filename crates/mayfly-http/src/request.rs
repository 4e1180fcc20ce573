//! A parsed request.

use alloc::{string::String, vec::Vec};

/// A complete request: head and whole body, as returned by
/// [`RequestParser::next_request`](crate::RequestParser::next_request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, as sent (`GET`, `POST`, ...; methods are case-sensitive).
    pub method: String,
    /// The request-target, as sent: usually an origin-form path with an optional query
    /// (`/items?id=3`); see [`path_without_query`](Self::path_without_query) and
    /// [`query`](Self::query).
    pub path: String,
    /// The minor version of the protocol: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The header fields in the order received, names as sent (compare them case-insensitively,
    /// or use [`header`](Self::header)), values with surrounding whitespace removed. Values are
    /// bytes: HTTP allows non-UTF-8 octets in them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, with any chunked framing removed. Empty when the request has none.
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the first header field named `name` (compared case-insensitively).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// Whether the connection may be kept open after answering this request.
    ///
    /// HTTP/1.1 keeps the connection unless a `Connection` field lists `close`; HTTP/1.0 closes it
    /// unless a `Connection` field lists `keep-alive` (and none lists `close`).
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        let options = self
            .headers
            .iter()
            .filter(|(field, _)| field.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, value)| value.split(|&b| b == b','))
            .map(trim_ows);
        for option in options {
            if option.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
        !close && (self.version_minor >= 1 || keep_alive)
    }

    /// The request-target without its query: everything before the first `?`.
    #[must_use]
    pub fn path_without_query(&self) -> &str {
        self.path.split_once('?').map_or(self.path.as_str(), |(path, _)| path)
    }

    /// The query: everything after the first `?` of the request-target, if there is one.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, query)| query)
    }
}

/// `bytes` without leading and trailing optional whitespace (spaces and horizontal tabs).
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |last| last + 1);
    bytes.get(start..end).unwrap_or_default()
}
