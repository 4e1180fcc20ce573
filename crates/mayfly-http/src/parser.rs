//! The incremental request parser.
//!
//! # Buffer layout
//! All received input lives in one buffer, `buf`. Bytes before `pos` are consumed; bytes from
//! `pos` on are *raw* input not yet looked at. While a chunked body is being decoded, its decoded
//! bytes are moved down in place to `buf[start..start + len]` (always below `pos`, since framing is
//! never shorter than nothing), so decoding needs no second buffer. Consumed bytes are dropped by
//! [`RequestParser::compact`] when they make up half the buffer or when room is needed.

use core::mem;

use alloc::{string::String, vec, vec::Vec};

use crate::{HttpError, Request, request::trim_ows};

/// The longest chunk-size line accepted in a chunked body, extensions and CRLF included. It is
/// also the framing overhead allowed for in [`RequestParser::capacity`].
pub const CHUNK_LINE_MAX: usize = 1024;

/// Allocations of the buffer larger than this are given back once the buffer is mostly empty, so
/// that an idle keep-alive connection does not hold the memory of its largest request.
const SHRINK_ABOVE: usize = 16 * 1024;

/// Limits on what a client may send, enforced by [`RequestParser`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest head accepted, in bytes: request line, header fields and the empty line
    /// ending them (and any empty lines before the request line). Trailer fields of a chunked
    /// body count against the same budget. Default 8 KiB. Over it: [`HttpError::HeadersTooLarge`].
    pub max_head_bytes: usize,
    /// The most header fields accepted in a head (and, separately, in a chunked trailer section).
    /// Default 64. Over it: [`HttpError::HeadersTooLarge`].
    pub max_headers: usize,
    /// The longest body accepted, in bytes, after chunked decoding. Default 1 MiB. Over it:
    /// [`HttpError::BodyTooLarge`].
    pub max_body_bytes: usize,
}

impl Limits {
    /// The default limits: 8 KiB of head, 64 header fields, 1 MiB of body.
    pub const DEFAULT: Limits =
        Limits { max_head_bytes: 8 * 1024, max_headers: 64, max_body_bytes: 1024 * 1024 };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// An incremental, sans-IO HTTP/1.1 request parser for one connection.
///
/// Feed it the bytes received with [`push`](Self::push) and take complete requests with
/// [`next_request`](Self::next_request), until that returns `Ok(None)` (more input needed). Bytes
/// after a complete request stay buffered for the next one, so pipelined and keep-alive requests
/// just work.
///
/// Memory is bounded: the parser's buffer never holds more than [`capacity`](Self::capacity)
/// bytes. [`push`](Self::push) takes only what fits, and when the buffer is full
/// [`next_request`](Self::next_request) always returns a request (making room) or an error, never
/// `Ok(None)`.
///
/// After an error the parser stays failed: [`next_request`](Self::next_request) returns the same
/// error again and input is discarded. Answer with [`HttpError::response`] and close.
#[derive(Debug)]
pub struct RequestParser {
    /// The limits enforced.
    limits: Limits,
    /// Received input; see the module documentation for its layout.
    buf: Vec<u8>,
    /// Where the raw input not yet looked at starts in `buf`.
    pos: usize,
    /// How far the request in progress has got.
    state: State,
    /// The error the parser failed with, if it did.
    failed: Option<HttpError>,
    /// Whether the request in progress asked for `100 Continue` and nobody has taken that yet.
    expect_continue: bool,
}

/// How far the request in progress has got.
#[derive(Debug)]
enum State {
    /// Waiting for the end of the head.
    Head {
        /// How many bytes of raw input (from `pos`) are known not to end the head.
        scanned: usize,
        /// How many bytes of empty lines before the request line were skipped.
        skipped: usize,
    },
    /// The head is parsed; receiving the body.
    Body {
        /// The parsed head.
        head: Head,
        /// How the body is framed, and how much of it has arrived.
        body: BodyState,
    },
}

/// A parsed head, waiting for its body.
#[derive(Debug)]
struct Head {
    /// See [`Request::method`].
    method: String,
    /// See [`Request::path`].
    path: String,
    /// See [`Request::version_minor`].
    version_minor: u8,
    /// See [`Request::headers`].
    headers: Vec<(String, Vec<u8>)>,
    /// The length of the head in bytes, counted against the trailer budget.
    len: usize,
}

impl Head {
    /// The complete request made of this head and `body`.
    fn into_request(self, body: Vec<u8>) -> Request {
        Request {
            method: self.method,
            path: self.path,
            version_minor: self.version_minor,
            headers: self.headers,
            body,
        }
    }
}

/// How a body is framed, and how much of it has arrived.
#[derive(Debug)]
enum BodyState {
    /// `Content-Length` (or no body: length 0). The body is taken from the raw input once it has
    /// all arrived.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked {
        /// Where the decoded body starts in the buffer.
        start: usize,
        /// How many decoded bytes there are.
        len: usize,
        /// What is expected next.
        phase: ChunkPhase,
    },
}

/// What a chunked body expects next.
#[derive(Debug)]
enum ChunkPhase {
    /// A chunk-size line.
    Size {
        /// How many bytes of raw input are known not to end the line.
        scanned: usize,
    },
    /// This many more bytes of chunk data.
    Data(usize),
    /// The CRLF ending chunk data.
    DataEnd,
    /// The trailer section, after the last chunk.
    Trailers {
        /// How many bytes of raw input are known not to end the trailer section.
        scanned: usize,
    },
}

impl RequestParser {
    /// A parser, with nothing buffered, that enforces `limits`.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            buf: Vec::new(),
            pos: 0,
            state: State::Head { scanned: 0, skipped: 0 },
            failed: None,
            expect_continue: false,
        }
    }

    /// The limits this parser enforces.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The most bytes of input the parser ever holds:
    /// `max_head_bytes + max_body_bytes + CHUNK_LINE_MAX`.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.limits
            .max_head_bytes
            .saturating_add(self.limits.max_body_bytes)
            .saturating_add(CHUNK_LINE_MAX)
    }

    /// How many bytes of input the parser holds for requests not yet returned: raw input not yet
    /// parsed plus the decoded part of a chunked body. At most [`capacity`](Self::capacity).
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.raw_len().saturating_add(self.decoded_len())
    }

    /// Whether no part of a next request has been received: nothing is buffered and no request is
    /// in progress. A connection idle for too long in this state can be closed quietly; one that
    /// is not idle is in the middle of a request.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { skipped: 0, .. }) && self.raw_len() == 0
    }

    /// Buffers received bytes and returns how many were taken.
    ///
    /// All of `bytes` is taken unless the buffer would then exceed [`capacity`](Self::capacity);
    /// in that case the rest must be pushed again after [`next_request`](Self::next_request) has
    /// returned a request (which makes room). When `push` takes nothing, `next_request` is sure to
    /// return a request or an error.
    ///
    /// Once the parser has failed, bytes are discarded (and reported taken).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        if self.failed.is_some() {
            return bytes.len();
        }
        let capacity = self.capacity();
        let live = self.buffered();
        let garbage = self.buf.len().saturating_sub(live);
        if garbage > 0 && (garbage >= live || self.buf.len().saturating_add(bytes.len()) > capacity)
        {
            self.compact();
        }
        let taken = bytes.len().min(capacity.saturating_sub(self.buf.len()));
        let Some(taken_bytes) = bytes.get(..taken) else {
            return 0;
        };
        let needed = self.buf.len().saturating_add(taken);
        if needed > self.buf.capacity() {
            // Grow geometrically, but never allocate past the capacity.
            let target =
                needed.max(self.buf.capacity().saturating_mul(2)).min(capacity).max(needed);
            self.buf.reserve_exact(target.saturating_sub(self.buf.len()));
        }
        self.buf.extend_from_slice(taken_bytes);
        taken
    }

    /// The next complete request, if its head and whole body have arrived; `Ok(None)` if more
    /// input is needed.
    ///
    /// # Errors
    /// The request is malformed or over a limit; see [`HttpError`]. The parser is then failed:
    /// every later call returns the same error.
    pub fn next_request(&mut self) -> Result<Option<Request>, HttpError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let result = match self.advance() {
            // Cannot happen (see `capacity`), but a full buffer must never mean "wait for more".
            Ok(None) if self.buffered() >= self.capacity() => Err(match self.state {
                State::Head { .. } => HttpError::HeadersTooLarge,
                State::Body { .. } => HttpError::BodyTooLarge,
            }),
            result => result,
        };
        if let Err(error) = result {
            self.failed = Some(error);
            self.expect_continue = false;
        }
        result
    }

    /// Whether the client waits for a `100 Continue` before sending the body of the request in
    /// progress (it sent `Expect: 100-continue`). True at most once per request, and only once
    /// its head has been parsed by [`next_request`](Self::next_request) and while its body is
    /// incomplete: the caller should then write [`CONTINUE_RESPONSE`](crate::CONTINUE_RESPONSE).
    pub fn take_expect_continue(&mut self) -> bool {
        mem::take(&mut self.expect_continue)
    }

    /// The length of the buffer and of its allocation, consumed bytes included.
    #[cfg(test)]
    pub(crate) fn buffer_footprint(&self) -> (usize, usize) {
        (self.buf.len(), self.buf.capacity())
    }

    /// Raw input not yet looked at, in bytes.
    fn raw_len(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Decoded bytes of a chunked body in progress.
    fn decoded_len(&self) -> usize {
        match &self.state {
            State::Body { body: BodyState::Chunked { len, .. }, .. } => *len,
            _ => 0,
        }
    }

    /// Parses as much of the request in progress as the input allows.
    fn advance(&mut self) -> Result<Option<Request>, HttpError> {
        if let State::Head { .. } = self.state {
            let Some((head, body)) = self.parse_head()? else {
                return Ok(None);
            };
            self.state = State::Body { head, body };
        }
        let Some(body) = self.read_body()? else {
            return Ok(None);
        };
        self.expect_continue = false;
        match mem::replace(&mut self.state, State::Head { scanned: 0, skipped: 0 }) {
            State::Body { head, .. } => Ok(Some(head.into_request(body))),
            State::Head { .. } => Ok(None),
        }
    }

    /// Parses the head once it has all arrived, and works out the framing of the body.
    fn parse_head(&mut self) -> Result<Option<(Head, BodyState)>, HttpError> {
        let State::Head { scanned, skipped } = &mut self.state else {
            return Ok(None);
        };
        let max_head = self.limits.max_head_bytes;

        // Empty lines before the request line are ignored (RFC 9112 section 2.2), within the
        // head budget.
        loop {
            let raw = self.buf.get(self.pos..).unwrap_or_default();
            let empty_line = if raw.starts_with(b"\r\n") {
                2
            } else if raw.starts_with(b"\n") {
                1
            } else {
                break;
            };
            self.pos += empty_line;
            *skipped += empty_line;
            *scanned = 0;
        }
        let budget = max_head.checked_sub(*skipped).ok_or(HttpError::HeadersTooLarge)?;

        let raw = self.buf.get(self.pos..).unwrap_or_default();
        let window = raw.get(..budget).unwrap_or(raw);
        let end = match find_empty_line(window, *scanned) {
            Ok(end) => end,
            Err(resume) => {
                if !raw.is_empty() && raw.len() >= budget {
                    return Err(HttpError::HeadersTooLarge);
                }
                *scanned = resume;
                return Ok(None);
            }
        };
        let head_bytes = window.get(..end).unwrap_or(window);

        // A field line takes at least 3 bytes ("a:\n"), so this many slots always suffice.
        let slots = self.limits.max_headers.min(end / 3 + 1);
        let mut fields = vec![httparse::EMPTY_HEADER; slots];
        let mut parsed = httparse::Request::new(&mut fields);
        match parsed.parse(head_bytes) {
            Ok(httparse::Status::Complete(len)) if len == end => {}
            Ok(_) => return Err(HttpError::BadRequest("malformed request head")),
            Err(error) => return Err(parse_error(error)),
        }
        let (Some(method), Some(path), Some(version_minor)) =
            (parsed.method, parsed.path, parsed.version)
        else {
            return Err(HttpError::BadRequest("malformed request line"));
        };
        let body = body_framing(version_minor, parsed.headers, self.limits.max_body_bytes)?;
        let body_expected = match body {
            BodyState::Length(len) => len > 0,
            BodyState::Chunked { .. } => true,
        };
        self.expect_continue = body_expected
            && version_minor >= 1
            && parsed.headers.iter().any(|field| {
                field.name.eq_ignore_ascii_case("expect")
                    && trim_ows(field.value).eq_ignore_ascii_case(b"100-continue")
            });
        let head = Head {
            method: method.into(),
            path: path.into(),
            version_minor,
            headers: parsed
                .headers
                .iter()
                .map(|field| (String::from(field.name), field.value.to_vec()))
                .collect(),
            len: skipped.saturating_add(end),
        };
        self.pos += end;
        let body = match body {
            BodyState::Chunked { phase, .. } => {
                BodyState::Chunked { start: self.pos, len: 0, phase }
            }
            length => length,
        };
        Ok(Some((head, body)))
    }

    /// Reads as much of the body as the input allows, and returns it once complete.
    fn read_body(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        let State::Body { head, body } = &mut self.state else {
            return Ok(None);
        };
        match body {
            BodyState::Length(len) => {
                let raw = self.buf.get(self.pos..).unwrap_or_default();
                let Some(body) = raw.get(..*len) else {
                    return Ok(None);
                };
                let body = body.to_vec();
                self.pos += *len;
                Ok(Some(body))
            }
            BodyState::Chunked { start, len, phase } => {
                let mut chunked = Chunked {
                    buf: &mut self.buf,
                    pos: &mut self.pos,
                    start: *start,
                    len,
                    phase,
                    limits: self.limits,
                    head_len: head.len,
                };
                chunked.decode()
            }
        }
    }

    /// Drops consumed bytes from the buffer, keeping the decoded part of a chunked body and the
    /// raw input, in that order, at its start.
    fn compact(&mut self) {
        let (keep_start, keep_len) = match &self.state {
            State::Body { body: BodyState::Chunked { start, len, .. }, .. } => (*start, *len),
            _ => (self.pos, 0),
        };
        let raw_len = self.raw_len();
        let keep_end = keep_start.saturating_add(keep_len);
        if keep_end > self.pos || self.pos > self.buf.len() {
            return; // Not a valid layout: never the case, and nothing is lost by not compacting.
        }
        self.buf.copy_within(keep_start..keep_end, 0);
        self.buf.copy_within(self.pos.., keep_len);
        self.buf.truncate(keep_len + raw_len);
        self.pos = keep_len;
        if let State::Body { body: BodyState::Chunked { start, .. }, .. } = &mut self.state {
            *start = 0;
        }
        if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() < self.buf.capacity() / 4 {
            self.buf.shrink_to(self.buf.len().saturating_mul(2).max(SHRINK_ABOVE / 4));
        }
    }
}

/// A chunked body being decoded, borrowed from a [`RequestParser`].
struct Chunked<'a> {
    /// The parser's buffer.
    buf: &'a mut Vec<u8>,
    /// The start of raw input in `buf`.
    pos: &'a mut usize,
    /// Where the decoded body starts in `buf`.
    start: usize,
    /// How many decoded bytes there are.
    len: &'a mut usize,
    /// What is expected next.
    phase: &'a mut ChunkPhase,
    /// The limits enforced.
    limits: Limits,
    /// The length of the head, which trailer fields share a budget with.
    head_len: usize,
}

impl Chunked<'_> {
    /// Decodes as much as the input allows, and returns the body once the last chunk and the
    /// trailer section have arrived.
    fn decode(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            let raw = self.buf.get(*self.pos..).unwrap_or_default();
            match self.phase {
                ChunkPhase::Size { scanned } => {
                    let window = raw.get(..CHUNK_LINE_MAX).unwrap_or(raw);
                    let found = window.get(*scanned..).and_then(|rest| {
                        rest.iter().position(|&b| b == b'\n').map(|offset| *scanned + offset)
                    });
                    let Some(newline) = found else {
                        if raw.len() >= CHUNK_LINE_MAX {
                            return Err(HttpError::BadRequest("chunk-size line too long"));
                        }
                        *scanned = window.len();
                        return Ok(None);
                    };
                    let line = window
                        .get(..newline)
                        .and_then(|line| line.strip_suffix(b"\r"))
                        .ok_or(HttpError::BadRequest("chunk-size line not ended by CRLF"))?;
                    let size = parse_chunk_size_line(line)?;
                    *self.pos += newline + 1;
                    *self.phase = if size == 0 {
                        ChunkPhase::Trailers { scanned: 0 }
                    } else if self
                        .len
                        .checked_add(size)
                        .is_none_or(|total| total > self.limits.max_body_bytes)
                    {
                        return Err(HttpError::BodyTooLarge);
                    } else {
                        ChunkPhase::Data(size)
                    };
                }
                ChunkPhase::Data(remaining) => {
                    let count = (*remaining).min(raw.len());
                    if count == 0 {
                        return Ok(None);
                    }
                    let destination = self.start.saturating_add(*self.len);
                    let source_end = self.pos.saturating_add(count);
                    if destination > *self.pos || source_end > self.buf.len() {
                        return Err(HttpError::BadRequest("internal error: chunk out of place"));
                    }
                    self.buf.copy_within(*self.pos..source_end, destination);
                    *self.len += count;
                    *self.pos = source_end;
                    *remaining -= count;
                    if *remaining == 0 {
                        *self.phase = ChunkPhase::DataEnd;
                    }
                }
                ChunkPhase::DataEnd => match raw {
                    [] | [b'\r'] => return Ok(None),
                    [b'\r', b'\n', ..] => {
                        *self.pos += 2;
                        *self.phase = ChunkPhase::Size { scanned: 0 };
                    }
                    _ => return Err(HttpError::BadRequest("chunk data not followed by CRLF")),
                },
                ChunkPhase::Trailers { scanned } => {
                    match raw {
                        [] | [b'\r'] => return Ok(None),
                        [b'\r', b'\n', ..] => {
                            *self.pos += 2;
                            return Ok(Some(self.body()));
                        }
                        [b'\r' | b'\n', ..] => {
                            return Err(HttpError::BadRequest("malformed chunked trailer section"));
                        }
                        _ => {}
                    }
                    let budget = self.limits.max_head_bytes.saturating_sub(self.head_len);
                    let window = raw.get(..budget).unwrap_or(raw);
                    let end = match find_empty_line(window, *scanned) {
                        Ok(end) => end,
                        Err(resume) => {
                            if raw.len() >= budget {
                                return Err(HttpError::HeadersTooLarge);
                            }
                            *scanned = resume;
                            return Ok(None);
                        }
                    };
                    let section = window.get(..end).unwrap_or(window);
                    let slots = self.limits.max_headers.min(end / 3 + 1);
                    let mut fields = vec![httparse::EMPTY_HEADER; slots];
                    match httparse::parse_headers(section, &mut fields) {
                        Ok(httparse::Status::Complete((len, _))) if len == end => {}
                        Ok(_) => return Err(HttpError::BadRequest("malformed trailer section")),
                        Err(httparse::Error::TooManyHeaders) => {
                            return Err(HttpError::HeadersTooLarge);
                        }
                        Err(_) => return Err(HttpError::BadRequest("malformed trailer field")),
                    }
                    *self.pos += end;
                    return Ok(Some(self.body()));
                }
            }
        }
    }

    /// A copy of the decoded body.
    fn body(&self) -> Vec<u8> {
        let end = self.start.saturating_add(*self.len);
        self.buf.get(self.start..end).unwrap_or_default().to_vec()
    }
}

/// Finds the first empty line in `bytes` (an LF followed by LF or by CRLF), looking from `from`
/// on. Returns `Ok(end)`, the index just past it, or `Err(resume)`: where to look from once more
/// bytes have arrived.
fn find_empty_line(bytes: &[u8], from: usize) -> Result<usize, usize> {
    let mut at = from;
    while let Some(offset) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == b'\n'))
    {
        let newline = at + offset;
        match (bytes.get(newline + 1), bytes.get(newline + 2)) {
            (Some(b'\n'), _) => return Ok(newline + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(newline + 3),
            (None, _) | (Some(b'\r'), None) => return Err(newline),
            _ => at = newline + 1,
        }
    }
    Err(bytes.len().max(from))
}

/// What the body of a request with these header fields looks like, or why it is refused.
fn body_framing(
    version_minor: u8,
    fields: &[httparse::Header<'_>],
    max_body: usize,
) -> Result<BodyState, HttpError> {
    let mut content_length: Option<usize> = None;
    let mut transfer_encoding = false;
    let mut chunked = 0_usize;
    let mut other_coding = false;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-length") {
            // A list of identical values is allowed (RFC 9110 section 8.6).
            for value in field.value.split(|&b| b == b',').map(trim_ows) {
                let length =
                    parse_decimal(value).ok_or(HttpError::BadRequest("invalid Content-Length"))?;
                if content_length.is_some_and(|previous| previous != length) {
                    return Err(HttpError::BadRequest("conflicting Content-Length values"));
                }
                content_length = Some(length);
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for coding in field.value.split(|&b| b == b',').map(trim_ows) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked += 1;
                } else if !coding.is_empty() {
                    other_coding = true;
                }
            }
        }
    }
    if transfer_encoding {
        if content_length.is_some() {
            return Err(HttpError::BadRequest("both Content-Length and Transfer-Encoding"));
        }
        if version_minor == 0 {
            return Err(HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if other_coding {
            return Err(HttpError::UnsupportedTransferEncoding);
        }
        if chunked != 1 {
            return Err(HttpError::BadRequest("invalid Transfer-Encoding"));
        }
        return Ok(BodyState::Chunked { start: 0, len: 0, phase: ChunkPhase::Size { scanned: 0 } });
    }
    match content_length {
        Some(length) if length > max_body => Err(HttpError::BodyTooLarge),
        Some(length) => Ok(BodyState::Length(length)),
        None => Ok(BodyState::Length(0)),
    }
}

/// The value of a non-empty string of ASCII digits (saturating at `usize::MAX`), or `None` if
/// `digits` is not one.
fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_usize, |value, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        Some(value.saturating_mul(10).saturating_add(usize::from(b - b'0')))
    })
}

/// The chunk size a chunk-size line (without its CRLF) announces.
fn parse_chunk_size_line(line: &[u8]) -> Result<usize, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::BadRequest("missing chunk size"));
    }
    let mut size = 0_usize;
    for &b in line.get(..digits).unwrap_or_default() {
        let digit = char::from(b).to_digit(16).and_then(|d| usize::try_from(d).ok()).unwrap_or(0);
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(digit))
            .ok_or(HttpError::BodyTooLarge)?;
    }
    // Chunk extensions (`;name=value...`) are ignored, but must not hold control characters.
    let rest = line.get(digits..).unwrap_or_default();
    let extensions = trim_ows(rest);
    if !extensions.is_empty() && !extensions.starts_with(b";") {
        return Err(HttpError::BadRequest("invalid chunk size"));
    }
    if extensions.iter().any(|&b| b != b'\t' && b.is_ascii_control()) {
        return Err(HttpError::BadRequest("invalid chunk extension"));
    }
    Ok(size)
}

/// The error answering a head that httparse rejects.
fn parse_error(error: httparse::Error) -> HttpError {
    HttpError::BadRequest(match error {
        httparse::Error::TooManyHeaders => return HttpError::HeadersTooLarge,
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Token | httparse::Error::Status => "malformed request line",
    })
}
