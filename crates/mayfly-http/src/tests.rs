//! Host unit tests of the parser and the encoder.

use alloc::{
    format,
    string::{String, ToString},
    vec,
    vec::Vec,
};

use crate::{
    CHUNK_LINE_MAX, CONTINUE_RESPONSE, HttpError, Limits, Request, RequestParser, Response,
    reason_phrase,
};

// ----- helpers ---------------------------------------------------------------------------------

/// Small limits, so that tests reach them cheaply.
const SMALL: Limits = Limits { max_head_bytes: 128, max_headers: 4, max_body_bytes: 64 };

/// A deterministic xorshift64 generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Asserts the memory bound of `parser`.
fn assert_bounded(parser: &RequestParser) {
    let capacity = parser.capacity();
    let (length, allocation) = parser.buffer_footprint();
    assert!(parser.buffered() <= capacity, "buffered {} > {capacity}", parser.buffered());
    assert!(length <= capacity, "buffer length {length} > {capacity}");
    assert!(allocation <= capacity, "buffer allocation {allocation} > {capacity}");
    assert!(parser.buffered() <= length);
}

/// Feeds `input` to `parser` in pieces whose sizes `piece` chooses, taking every request as soon
/// as it is complete and checking the memory bound after every step. Returns the requests and the
/// error that stopped the parser, if any.
fn feed(
    parser: &mut RequestParser,
    input: &[u8],
    mut piece: impl FnMut() -> usize,
) -> (Vec<Request>, Option<HttpError>) {
    let mut requests = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let size = piece().clamp(1, rest.len());
        let taken = parser.push(&rest[..size]);
        assert!(taken <= size);
        assert_bounded(parser);
        rest = &rest[taken..];
        let before = requests.len();
        loop {
            match parser.next_request() {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(error) => {
                    // The parser stays failed, and discards input.
                    assert_eq!(parser.next_request(), Err(error));
                    assert_eq!(parser.push(b"GET / HTTP/1.1\r\n\r\n"), 18);
                    assert_eq!(parser.next_request(), Err(error));
                    return (requests, Some(error));
                }
            }
            assert_bounded(parser);
        }
        if taken == 0 {
            assert!(requests.len() > before, "push took nothing and no request came out");
        }
    }
    (requests, None)
}

/// Parses `input`, pushed at once, with `limits`.
fn parse_with(limits: Limits, input: &[u8]) -> (Vec<Request>, Option<HttpError>) {
    let mut parser = RequestParser::new(limits);
    feed(&mut parser, input, || usize::MAX)
}

/// The only request in `input`, which must parse without error.
fn parse_one(input: &[u8]) -> Request {
    let (mut requests, error) = parse_with(Limits::default(), input);
    assert_eq!(error, None);
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}

/// The error `input` makes a parser with `limits` fail with.
fn parse_error(limits: Limits, input: &[u8]) -> HttpError {
    let (requests, error) = parse_with(limits, input);
    assert_eq!(requests, vec![]);
    error.expect("the input should be refused")
}

fn header_pairs(request: &Request) -> Vec<(&str, &[u8])> {
    request.headers.iter().map(|(name, value)| (name.as_str(), value.as_slice())).collect()
}

// ----- parsing valid requests ------------------------------------------------------------------

#[test]
fn simple_get() {
    let mut parser = RequestParser::new(Limits::default());
    assert!(parser.is_idle());
    let input = b"GET /index.html?lang=en&x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    assert_eq!(parser.push(input), input.len());
    assert!(!parser.is_idle());
    let request = parser.next_request().unwrap().unwrap();
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/index.html?lang=en&x=1");
    assert_eq!(request.path_without_query(), "/index.html");
    assert_eq!(request.query(), Some("lang=en&x=1"));
    assert_eq!(request.version_minor, 1);
    assert_eq!(header_pairs(&request), vec![("Host", &b"example.com"[..]), ("Accept", b"*/*")]);
    assert_eq!(request.header("host"), Some(&b"example.com"[..]));
    assert_eq!(request.header("ACCEPT"), Some(&b"*/*"[..]));
    assert_eq!(request.header("Content-Length"), None);
    assert_eq!(request.body, b"");
    assert!(request.keep_alive());
    assert_eq!(parser.next_request(), Ok(None));
    assert!(parser.is_idle());
    assert_eq!(parser.buffered(), 0);
}

#[test]
fn path_without_a_query() {
    let request = parse_one(b"GET /a/b HTTP/1.1\r\n\r\n");
    assert_eq!(request.path_without_query(), "/a/b");
    assert_eq!(request.query(), None);
    let request = parse_one(b"GET /a? HTTP/1.1\r\n\r\n");
    assert_eq!(request.path_without_query(), "/a");
    assert_eq!(request.query(), Some(""));
}

#[test]
fn header_values_are_trimmed_and_may_be_non_utf8() {
    let request = parse_one(b"GET / HTTP/1.1\r\nX-A:   spaced  \r\nX-B: caf\xe9\r\n\r\n");
    assert_eq!(request.header("x-a"), Some(&b"spaced"[..]));
    assert_eq!(request.header("x-b"), Some(&b"caf\xe9"[..]));
}

#[test]
fn one_byte_pushes() {
    let input = b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    let mut parser = RequestParser::new(Limits::default());
    for (i, byte) in input.iter().enumerate() {
        assert_eq!(parser.next_request(), Ok(None), "request complete before byte {i}");
        assert_eq!(parser.push(&[*byte]), 1);
        assert!(!parser.is_idle());
        assert_bounded(&parser);
    }
    let request = parser.next_request().unwrap().unwrap();
    assert_eq!(request, parse_one(input));
    assert_eq!(request.method, "POST");
    assert_eq!(request.body, b"hello world");
    assert!(parser.is_idle());
}

#[test]
fn two_pipelined_requests_in_one_push() {
    let input = b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nPOST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /th";
    let mut parser = RequestParser::new(Limits::default());
    assert_eq!(parser.push(input), input.len());
    let first = parser.next_request().unwrap().unwrap();
    assert_eq!((first.method.as_str(), first.path.as_str()), ("GET", "/one"));
    assert_eq!(first.body, b"");
    let second = parser.next_request().unwrap().unwrap();
    assert_eq!((second.method.as_str(), second.path.as_str()), ("POST", "/two"));
    assert_eq!(second.body, b"abc");
    assert_eq!(parser.next_request(), Ok(None));
    // The start of a third request stays buffered.
    assert_eq!(parser.buffered(), b"GET /th".len());
    assert!(!parser.is_idle());
    parser.push(b"ird HTTP/1.1\r\n\r\n");
    assert_eq!(parser.next_request().unwrap().unwrap().path, "/third");
    assert!(parser.is_idle());
}

#[test]
fn content_length_body_in_pieces() {
    let mut parser = RequestParser::new(Limits::default());
    parser.push(b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123");
    assert_eq!(parser.next_request(), Ok(None));
    assert!(!parser.is_idle());
    parser.push(b"45");
    assert_eq!(parser.next_request(), Ok(None));
    parser.push(b"6789");
    let request = parser.next_request().unwrap().unwrap();
    assert_eq!(request.body, b"0123456789");
    assert_eq!(request.header("content-length"), Some(&b"10"[..]));
    assert!(parser.is_idle());
}

#[test]
fn content_length_list_of_identical_values() {
    let request =
        parse_one(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(request.body, b"abc");
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let input = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;name=value\r\nhello\r\n\
        6 ; a ; b=\"c d\"\r\n world\r\n\
        A\r\n, chunked!\r\n\
        0;last\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n\
        GET /next HTTP/1.1\r\n\r\n";
    let (requests, error) = parse_with(Limits::default(), input);
    assert_eq!(error, None);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body, b"hello world, chunked!");
    // Trailer fields are not added to the header fields.
    assert_eq!(header_pairs(&requests[0]), vec![("Transfer-Encoding", &b"chunked"[..])]);
    assert_eq!(requests[1].path, "/next");

    // The same bytes one at a time, and in pieces of 7.
    for piece in [1, 7] {
        let mut parser = RequestParser::new(Limits::default());
        assert_eq!(feed(&mut parser, input, || piece), (requests.clone(), None));
        assert!(parser.is_idle());
    }
}

#[test]
fn chunked_body_hex_sizes_and_empty_body() {
    let body: Vec<u8> = (0..0x1f + 0xA).map(|i| b'a' + (i % 26)).collect();
    let mut input = b"POST / HTTP/1.1\r\ntransfer-encoding: Chunked\r\n\r\n1f\r\n".to_vec();
    input.extend_from_slice(&body[..0x1f]);
    input.extend_from_slice(b"\r\n00A\r\n");
    input.extend_from_slice(&body[0x1f..]);
    input.extend_from_slice(b"\r\n000\r\n\r\n");
    assert_eq!(parse_one(&input).body, body);

    let request = parse_one(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(request.body, b"");
}

#[test]
fn chunked_body_up_to_the_limit() {
    let limits = Limits { max_body_bytes: 10, ..Limits::default() };
    let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n";
    let (requests, error) = parse_with(limits, input);
    assert_eq!(error, None);
    assert_eq!(requests[0].body, b"0123456789");
}

#[test]
fn lf_only_line_endings_in_the_head() {
    let request = parse_one(b"GET /lf HTTP/1.1\nHost: h\n\n");
    assert_eq!(request.path, "/lf");
    assert_eq!(request.header("host"), Some(&b"h"[..]));
}

#[test]
fn empty_lines_before_a_request_are_ignored() {
    let (requests, error) = parse_with(
        Limits::default(),
        b"\r\n\r\nGET /a HTTP/1.1\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
    );
    assert_eq!(error, None);
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, vec!["/a", "/b"]);

    // They are not idle (a request has begun) and count against the head budget.
    let mut parser = RequestParser::new(SMALL);
    parser.push(b"\r\n");
    assert_eq!(parser.next_request(), Ok(None));
    assert!(!parser.is_idle());
    let mut parser = RequestParser::new(SMALL);
    let (requests, error) = feed(&mut parser, &b"\r\n".repeat(65), || 10);
    assert_eq!((requests, error), (vec![], Some(HttpError::HeadersTooLarge)));
}

#[test]
fn keep_alive_semantics() {
    let cases: [(&[u8], bool); 9] = [
        (b"GET / HTTP/1.1\r\n\r\n", true),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nconnection: Upgrade , Keep-Alive\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n", false),
    ];
    for (input, keep_alive) in cases {
        let request = parse_one(input);
        assert_eq!(request.keep_alive(), keep_alive, "{}", String::from_utf8_lossy(input));
    }
    assert_eq!(parse_one(b"GET / HTTP/1.0\r\n\r\n").version_minor, 0);
}

#[test]
fn expect_continue() {
    let mut parser = RequestParser::new(Limits::default());
    parser.push(b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n");
    assert!(!parser.take_expect_continue(), "not before the head is parsed");
    assert_eq!(parser.next_request(), Ok(None));
    assert!(parser.take_expect_continue());
    assert!(!parser.take_expect_continue(), "only once");
    parser.push(b"ok");
    assert_eq!(parser.next_request().unwrap().unwrap().body, b"ok");
    assert!(!parser.take_expect_continue());
    assert_eq!(CONTINUE_RESPONSE, b"HTTP/1.1 100 Continue\r\n\r\n");

    // Not when the body has already arrived, nor without a body, nor for HTTP/1.0.
    for input in [
        &b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"[..],
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
    ] {
        let mut parser = RequestParser::new(Limits::default());
        parser.push(input);
        let _ = parser.next_request();
        assert!(!parser.take_expect_continue(), "{}", String::from_utf8_lossy(input));
    }
}

#[test]
fn a_full_buffer_always_yields_a_request() {
    // 200 small pipelined requests, far more than the capacity, pushed as one slice.
    let one = b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    let input = one.repeat(200);
    let mut parser = RequestParser::new(SMALL);
    assert!(input.len() > parser.capacity());
    let (requests, error) = feed(&mut parser, &input, || usize::MAX);
    assert_eq!(error, None);
    assert_eq!(requests.len(), 200);
    assert!(requests.iter().all(|r| r.body == b"hello" && r.path == "/p"));
    assert!(parser.is_idle());
}

#[test]
fn largest_requests_fit_with_pipelined_data_behind() {
    // A head of exactly max_head_bytes and a chunked body of exactly max_body_bytes, sent in
    // tiny chunks (so with much framing), followed by more requests: all must get through.
    let limits = Limits { max_head_bytes: 100, max_headers: 8, max_body_bytes: 300 };
    let mut head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-Pad: ".to_vec();
    head.extend(core::iter::repeat_n(b'p', 100 - head.len() - 4));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), 100);
    let mut one = head.clone();
    for i in 0..300 {
        one.extend_from_slice(format!("1;ext={i}\r\n").as_bytes());
        one.push(b'0' + u8::try_from(i % 10).unwrap());
        one.extend_from_slice(b"\r\n");
    }
    one.extend_from_slice(b"0\r\n\r\n");
    let input = [one.as_slice(), one.as_slice(), b"GET /last HTTP/1.1\r\n\r\n"].concat();
    for piece in [1, 13, 500, usize::MAX] {
        let mut parser = RequestParser::new(limits);
        let (requests, error) = feed(&mut parser, &input, || piece);
        assert_eq!(error, None, "pieces of {piece}");
        assert_eq!(requests.len(), 3);
        assert_eq!(requests[0].body.len(), 300);
        assert_eq!(requests[0].body, requests[1].body);
        assert_eq!(&requests[0].body[..12], b"012345678901");
        assert_eq!(requests[2].path, "/last");
    }
}

#[test]
fn memory_of_a_large_request_is_given_back() {
    let mut parser = RequestParser::new(Limits::default());
    let mut input = b"POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    input.resize(input.len() + 1_000_000, b'b');
    let (requests, error) = feed(&mut parser, &input, || 65536);
    assert_eq!((requests.len(), error), (1, None));
    assert_eq!(requests[0].body.len(), 1_000_000);
    assert!(parser.buffer_footprint().1 >= 1_000_000);
    // The next request finds the buffer empty, compacts it and shrinks the allocation.
    let (requests, error) = feed(&mut parser, b"GET /small HTTP/1.1\r\n\r\n", || usize::MAX);
    assert_eq!((requests.len(), error), (1, None));
    assert!(parser.buffer_footprint().1 <= 16 * 1024, "{:?}", parser.buffer_footprint());
}

// ----- errors ----------------------------------------------------------------------------------

#[test]
fn malformed_request_lines_are_bad_requests() {
    for input in [
        &b"GET\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /a b HTTP/1.1\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
        b"GET / HTTP/1.1\rX: y\r\n\r\n",
    ] {
        let error = parse_error(Limits::default(), input);
        assert!(
            matches!(error, HttpError::BadRequest(_)),
            "{:?} gave {error:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(error.status(), 400);
    }
}

#[test]
fn content_length_errors() {
    for input in [
        &b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3,\r\n\r\n",
    ] {
        assert_eq!(
            parse_error(Limits::default(), input),
            HttpError::BadRequest("invalid Content-Length"),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    for input in [
        &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"[..],
        b"POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd",
    ] {
        assert_eq!(
            parse_error(Limits::default(), input),
            HttpError::BadRequest("conflicting Content-Length values")
        );
    }
}

#[test]
fn body_too_large_is_decided_from_the_head() {
    let limits = Limits { max_body_bytes: 10, ..Limits::default() };
    let mut parser = RequestParser::new(limits);
    // Only the head is sent: the length alone is enough to refuse.
    parser.push(b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(parser.next_request(), Err(HttpError::BodyTooLarge));
    assert_eq!(HttpError::BodyTooLarge.status(), 413);

    let huge = b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n";
    assert_eq!(parse_error(limits, huge), HttpError::BodyTooLarge);

    // Exactly the limit is fine.
    let (requests, error) =
        parse_with(limits, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!((requests[0].body.as_slice(), error), (&b"0123456789"[..], None));
}

#[test]
fn chunked_body_too_large() {
    let limits = Limits { max_body_bytes: 10, ..Limits::default() };
    // Decided as soon as the size line of the chunk that would overflow arrives.
    let mut parser = RequestParser::new(limits);
    parser.push(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n");
    assert_eq!(parser.next_request(), Err(HttpError::BodyTooLarge));
    // A chunk size that does not fit in a usize.
    let input =
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n";
    assert_eq!(parse_error(limits, input), HttpError::BodyTooLarge);
}

#[test]
fn transfer_encoding_errors() {
    let cases: [(&[u8], HttpError); 8] = [
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
            HttpError::UnsupportedTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::BadRequest("both Content-Length and Transfer-Encoding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
            HttpError::BadRequest("both Content-Length and Transfer-Encoding"),
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            HttpError::BadRequest("Transfer-Encoding in an HTTP/1.0 request"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            HttpError::BadRequest("invalid Transfer-Encoding"),
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
            HttpError::BadRequest("invalid Transfer-Encoding"),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_error(Limits::default(), input), expected);
    }
    assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
}

#[test]
fn malformed_chunks_are_bad_requests() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_extension = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(CHUNK_LINE_MAX));
    let cases: [(&[u8], &str); 9] = [
        (b"zz\r\n", "missing chunk size"),
        (b";ext\r\n", "missing chunk size"),
        (b"5x\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        (b"5\nhello\r\n0\r\n\r\n", "chunk-size line not ended by CRLF"),
        (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
        (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
        (b"5;a\x01b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        (long_extension.as_bytes(), "chunk-size line too long"),
        (b"0\r\n\rX", "malformed chunked trailer section"),
    ];
    for (body, why) in cases {
        let input = [&head[..], body].concat();
        assert_eq!(
            parse_error(Limits::default(), &input),
            HttpError::BadRequest(why),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let input = [&head[..], b"0\r\nBad Trailer: x\r\n\r\n"].concat();
    assert_eq!(
        parse_error(Limits::default(), &input),
        HttpError::BadRequest("malformed trailer field")
    );
}

#[test]
fn chunked_trailers_over_the_limits() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    // Head and trailers share max_head_bytes.
    let trailer = format!("0\r\nX-Big: {}\r\n\r\n", "t".repeat(SMALL.max_head_bytes - head.len()));
    let input = [&head[..], trailer.as_bytes()].concat();
    assert_eq!(parse_error(SMALL, &input), HttpError::HeadersTooLarge);
    // More trailer fields than max_headers.
    let input = [&head[..], b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n"].concat();
    assert_eq!(parse_error(SMALL, &input), HttpError::HeadersTooLarge);
    // Four are fine.
    let input = [&head[..], b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"].concat();
    assert_eq!(parse_with(SMALL, &input).1, None);
}

#[test]
fn oversized_head_is_refused_before_it_ends() {
    let limits = Limits { max_head_bytes: 100, ..Limits::default() };
    let mut parser = RequestParser::new(limits);
    let start = b"GET /".to_vec();
    parser.push(&start);
    // Up to 99 bytes without an end, the head may still fit.
    parser.push(&[b'a'; 94]);
    assert_eq!(parser.buffered(), 99);
    assert_eq!(parser.next_request(), Ok(None));
    // At 100 bytes without an end, it cannot.
    parser.push(b"a");
    assert_eq!(parser.next_request(), Err(HttpError::HeadersTooLarge));
    assert_eq!(HttpError::HeadersTooLarge.status(), 431);

    // A head of exactly 100 bytes is accepted.
    let mut head = b"GET /".to_vec();
    head.extend(core::iter::repeat_n(b'a', 100 - head.len() - b" HTTP/1.1\r\n\r\n".len()));
    head.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(head.len(), 100);
    assert_eq!(parse_with(limits, &head).0.len(), 1);
    // One more byte is refused, even though the head then ends.
    head.insert(5, b'a');
    assert_eq!(parse_error(limits, &head), HttpError::HeadersTooLarge);
}

#[test]
fn oversized_head_in_a_stream_of_garbage() {
    // A client sending endless bytes without an empty line is cut off at the head limit.
    let mut parser = RequestParser::new(Limits::default());
    let mut sent = 0;
    let error = loop {
        sent += parser.push(&[b'x'; 1000]);
        assert_bounded(&parser);
        match parser.next_request() {
            Ok(None) => assert!(sent < 8 * 1024),
            Ok(Some(request)) => panic!("unexpected request {request:?}"),
            Err(error) => break error,
        }
    };
    assert_eq!(error, HttpError::HeadersTooLarge);
    assert_eq!(sent, 9000);
}

#[test]
fn header_count_over_the_limit() {
    let mut input = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..5 {
        input.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    input.extend_from_slice(b"\r\n");
    assert_eq!(parse_error(SMALL, &input), HttpError::HeadersTooLarge);
    // The default limit is 64 fields: 64 pass, 65 do not.
    let head = |count: usize| {
        let fields: String = (0..count).map(|i| format!("F{i}: v\r\n")).collect();
        format!("GET / HTTP/1.1\r\n{fields}\r\n").into_bytes()
    };
    assert_eq!(parse_one(&head(64)).headers.len(), 64);
    assert_eq!(parse_error(Limits::default(), &head(65)), HttpError::HeadersTooLarge);
    // No fields at all may be allowed.
    let none = Limits { max_headers: 0, ..Limits::default() };
    assert_eq!(parse_with(none, b"GET / HTTP/1.1\r\n\r\n").0.len(), 1);
    assert_eq!(parse_error(none, b"GET / HTTP/1.1\r\nA: b\r\n\r\n"), HttpError::HeadersTooLarge);
}

#[test]
fn errors_map_to_responses() {
    let cases = [
        (
            HttpError::BadRequest("invalid Content-Length"),
            400,
            "bad request: invalid Content-Length\n",
        ),
        (HttpError::HeadersTooLarge, 431, "request head too large\n"),
        (HttpError::BodyTooLarge, 413, "request body too large\n"),
        (
            HttpError::UnsupportedTransferEncoding,
            501,
            "unsupported transfer coding (only chunked is supported)\n",
        ),
    ];
    for (error, status, text) in cases {
        assert_eq!(error.status(), status);
        let response = error.response();
        assert_eq!(response.status, status);
        assert_eq!(response.body, text.as_bytes());
        assert_eq!(error.to_string(), text.trim_end());
    }
    let mut out = Vec::new();
    HttpError::BodyTooLarge.response().encode(false, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 23\r\nConnection: close\r\n\r\nrequest body too large\n"
    );
}

// ----- responses -------------------------------------------------------------------------------

fn encoded(response: &Response, keep_alive: bool) -> String {
    let mut out = Vec::new();
    response.encode(keep_alive, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn encode_text_response() {
    let response = Response::text(200, "hello\n");
    assert_eq!(
        encoded(&response, true),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\
         Connection: keep-alive\r\n\r\nhello\n"
    );
    assert_eq!(
        encoded(&response, false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\n\
         Connection: close\r\n\r\nhello\n"
    );
}

#[test]
fn encode_appends() {
    let mut out = b"earlier".to_vec();
    Response::new(404).encode(true, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "earlierHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn encode_headers_and_body() {
    let response = Response::new(201)
        .with_header("Location", "/items/7")
        .with_header("X-Multi", "a")
        .with_header("X-Multi", "b\tc")
        .with_body(&b"\x00\xffbinary"[..]);
    let mut out = Vec::new();
    response.encode(true, &mut out);
    let mut expected =
        b"HTTP/1.1 201 Created\r\nLocation: /items/7\r\nX-Multi: a\r\nX-Multi: b\tc\r\n\
        Content-Length: 8\r\nConnection: keep-alive\r\n\r\n"
            .to_vec();
    expected.extend_from_slice(b"\x00\xffbinary");
    assert_eq!(out, expected);
    let length = 1_234_567;
    let big = Response::new(200).with_body(vec![b'z'; length]);
    let mut out = Vec::new();
    big.encode(false, &mut out);
    assert!(
        out.starts_with(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234567\r\nConnection: close\r\n\r\nzz"
        )
    );
    assert_eq!(out.len(), 63 + length);
}

#[test]
fn encode_drops_framing_and_unsafe_fields() {
    let response = Response::text(200, "ok")
        .with_header("Content-Length", "999")
        .with_header("connection", "upgrade")
        .with_header("Transfer-Encoding", "chunked")
        .with_header("X-Split", "a\r\nSet-Cookie: evil=1")
        .with_header("Bad Name", "x")
        .with_header("", "x")
        .with_header("X-Fine", "fine");
    assert_eq!(
        encoded(&response, false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-Fine: fine\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\nok"
    );
}

#[test]
fn encode_bodiless_statuses_and_head() {
    for status in [100, 204, 304] {
        let response = Response::text(status, "ignored");
        assert_eq!(
            encoded(&response, true),
            format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Connection: keep-alive\r\n\r\n",
                reason_phrase(status)
            )
        );
    }
    let mut out = Vec::new();
    Response::text(200, "abc").encode_head(true, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
         Connection: keep-alive\r\n\r\n"
    );
}

#[test]
fn encode_unknown_and_invalid_statuses() {
    assert_eq!(
        encoded(&Response::new(299), true),
        "HTTP/1.1 299 \r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    for status in [0, 99, 1000, u16::MAX] {
        assert_eq!(
            encoded(&Response::new(status), false),
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}

#[test]
fn reason_phrases() {
    let cases = [
        (200, "OK"),
        (204, "No Content"),
        (301, "Moved Permanently"),
        (400, "Bad Request"),
        (404, "Not Found"),
        (413, "Content Too Large"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (503, "Service Unavailable"),
        (299, ""),
        (0, ""),
    ];
    for (status, phrase) in cases {
        assert_eq!(reason_phrase(status), phrase);
    }
}

#[cfg(feature = "json")]
#[test]
fn json_response() {
    #[derive(serde::Serialize)]
    struct Item<'a> {
        id: u32,
        name: &'a str,
        tags: Vec<&'a str>,
        price: Option<f64>,
    }
    let item = Item { id: 7, name: "wid\"get", tags: vec!["a", "b"], price: None };
    let response = Response::json(200, &item).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, br#"{"id":7,"name":"wid\"get","tags":["a","b"],"price":null}"#);
    assert_eq!(
        encoded(&response, true),
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 56\r\n\
         Connection: keep-alive\r\n\r\n{\"id\":7,\"name\":\"wid\\\"get\",\"tags\":[\"a\",\"b\"],\"price\":null}"
    );
    // Unsized values work too.
    assert_eq!(Response::json(201, &[1, 2, 3][..]).unwrap().body, b"[1,2,3]");
    // Maps whose keys are not strings cannot be JSON.
    let mut map = alloc::collections::BTreeMap::new();
    map.insert(vec![1_u8], 1);
    assert!(Response::json(200, &map).is_err());
}

#[test]
fn limits_default() {
    let limits = Limits::default();
    assert_eq!(limits, Limits::DEFAULT);
    assert_eq!(limits.max_head_bytes, 8192);
    assert_eq!(limits.max_headers, 64);
    assert_eq!(limits.max_body_bytes, 1_048_576);
    let parser = RequestParser::new(limits);
    assert_eq!(parser.limits(), limits);
    assert_eq!(parser.capacity(), 8192 + 1_048_576 + CHUNK_LINE_MAX);
    let huge = Limits { max_head_bytes: usize::MAX, max_headers: 1, max_body_bytes: usize::MAX };
    assert_eq!(RequestParser::new(huge).capacity(), usize::MAX);
}

// ----- randomized ------------------------------------------------------------------------------

/// A random valid request, and the bytes that send it.
fn random_request(rng: &mut Rng, limits: Limits) -> (Request, Vec<u8>) {
    let method = *rng.pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
    let mut path = String::from("/");
    for _ in 0..rng.below(20) {
        path.push(char::from(*rng.pick(b"abcxyz0129-_./~%")));
    }
    if rng.chance(3) {
        path.push_str("?q=1&r=");
        path.push(char::from(*rng.pick(b"abc")));
    }
    let version_minor = u8::from(!rng.chance(5));
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..rng.below(limits.max_headers.min(6)) {
        let value: Vec<u8> = (0..rng.below(12)).map(|_| *rng.pick(b"abc 123,;=\"/")).collect();
        headers.push((format!("X-Field-{i}"), trim(&value).to_vec()));
    }
    let body: Vec<u8> =
        (0..rng.below(limits.max_body_bytes.min(200) + 1)).map(|_| rng.byte()).collect();
    let chunked = version_minor == 1 && rng.chance(2);
    if chunked {
        headers.push(("Transfer-Encoding".into(), b"chunked".to_vec()));
    } else if !body.is_empty() || rng.chance(2) {
        headers.push(("content-length".into(), body.len().to_string().into_bytes()));
    }
    let mut bytes = format!("{method} {path} HTTP/1.{version_minor}\r\n").into_bytes();
    for (name, value) in &headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b":");
        bytes.extend_from_slice(&b"  "[..rng.below(3)]);
        bytes.extend_from_slice(value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    let head_len = bytes.len();
    let body_bytes = if chunked {
        let mut encoded = Vec::new();
        let mut rest = body.as_slice();
        while !rest.is_empty() {
            let size = (1 + rng.below(40)).min(rest.len());
            let (chunk, tail) = rest.split_at(size);
            let hex = if rng.chance(2) { format!("{size:x}") } else { format!("{size:X}") };
            encoded.extend_from_slice(hex.as_bytes());
            if rng.chance(3) {
                encoded.extend_from_slice(b";ext=\"v\"");
            }
            encoded.extend_from_slice(b"\r\n");
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
            rest = tail;
        }
        encoded.extend_from_slice(b"0\r\n");
        if rng.chance(3) && head_len + 12 <= limits.max_head_bytes {
            encoded.extend_from_slice(b"X-T: 1\r\n");
        }
        encoded.extend_from_slice(b"\r\n");
        encoded
    } else {
        body.clone()
    };
    bytes.extend_from_slice(&body_bytes);
    let request = Request { method: method.into(), path, version_minor, headers, body };
    (request, bytes)
}

fn trim(bytes: &[u8]) -> &[u8] {
    crate::request::trim_ows(bytes)
}

#[test]
fn random_valid_requests_parse_the_same_in_any_pieces() {
    let limits = Limits { max_head_bytes: 512, max_headers: 8, max_body_bytes: 256 };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..400 {
        let mut expected = Vec::new();
        let mut stream = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let (request, bytes) = random_request(&mut rng, limits);
            assert!(bytes.len() <= limits.max_head_bytes + 2 * limits.max_body_bytes + 200);
            expected.push(request);
            stream.extend_from_slice(&bytes);
        }
        let max_piece = *rng.pick(&[1, 3, 16, 100, 4096]);
        let mut parser = RequestParser::new(limits);
        let (requests, error) = feed(&mut parser, &stream, || 1 + rng.below(max_piece));
        assert_eq!(error, None, "round {round}: {}", String::from_utf8_lossy(&stream));
        assert_eq!(requests, expected, "round {round}");
        assert!(parser.is_idle(), "round {round}");
        assert_eq!(parser.buffered(), 0);
    }
}

/// Building blocks of random inputs that look enough like HTTP to reach deep into the parser.
const TOKENS: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"/",
    b"/p?q",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b": ",
    b" ",
    b"Host: h",
    b"Content-Length: ",
    b"Content-Length: 100000\r\n",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b"Expect: 100-continue",
    b"0",
    b"5",
    b"ff",
    b"FFFFFFFFFFFFFFFFFF",
    b";ext=1",
    b"hello",
    b",",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut input = Vec::new();
    if rng.chance(3) {
        for _ in 0..rng.below(400) {
            input.push(rng.byte());
        }
    } else {
        for _ in 0..rng.below(80) {
            if rng.chance(6) {
                input.push(rng.byte());
            } else {
                let token: &&[u8] = rng.pick(TOKENS);
                input.extend_from_slice(token);
            }
        }
    }
    input
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] = rng.byte(),
            1 => {
                let token = *rng.pick(TOKENS);
                input.splice(at..at, token.iter().copied());
            }
            2 => {
                let end = (at + rng.below(10)).min(input.len());
                input.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(30)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            4 => input.truncate(at),
            _ => input.insert(at, *rng.pick(b"\r\n:;0 ")),
        }
    }
}

#[test]
fn random_and_mutated_inputs_never_panic_and_stay_bounded() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut outcomes = [0_usize; 5];
    for round in 0..3000 {
        let limits = if round % 2 == 0 { SMALL } else { Limits::default() };
        let input = if round % 3 == 0 {
            random_input(&mut rng)
        } else {
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(3) {
                // Bodies up to 100 bytes: some are over the small body limit.
                let shape = Limits { max_body_bytes: 100, ..SMALL };
                stream.extend_from_slice(&random_request(&mut rng, shape).1);
            }
            mutate(&mut rng, &mut stream);
            stream
        };
        let max_piece = *rng.pick(&[1, 2, 7, 64, 1000]);
        let mut parser = RequestParser::new(limits);
        let (requests, error) = feed(&mut parser, &input, || 1 + rng.below(max_piece));
        let _ = parser.take_expect_continue();
        // Parsing the same input at once gives the same outcome.
        let mut at_once = RequestParser::new(limits);
        assert_eq!(
            feed(&mut at_once, &input, || usize::MAX),
            (requests.clone(), error),
            "round {round}: {:?}",
            String::from_utf8_lossy(&input)
        );
        for request in &requests {
            assert!(request.body.len() <= limits.max_body_bytes);
            assert!(request.headers.len() <= limits.max_headers);
        }
        match error {
            None => outcomes[0] += 1,
            Some(HttpError::BadRequest(_)) => outcomes[1] += 1,
            Some(HttpError::HeadersTooLarge) => outcomes[2] += 1,
            Some(HttpError::BodyTooLarge) => outcomes[3] += 1,
            Some(HttpError::UnsupportedTransferEncoding) => outcomes[4] += 1,
        }
    }
    // The inputs reach every outcome.
    assert!(outcomes.iter().all(|&count| count > 0), "outcomes: {outcomes:?}");
}
