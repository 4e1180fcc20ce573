//! Sans-IO HTTP/1.1: the request parser with hard limits and the response encoder.
//! See docs/design.md, "Map", for its place among the other crates.
//!
//! The crate never touches a socket: the caller reads bytes from wherever they come from and
//! hands them to a [`RequestParser`], which returns complete [`Request`]s; the caller answers each
//! with a [`Response`], which [`Response::encode`] turns into bytes to write back. It is `no_std`
//! (it needs only `alloc`), so the same code runs inside a guest and in host unit tests.
//!
//! # What is supported
//! - HTTP/1.0 and HTTP/1.1 requests, keep-alive and pipelining (bytes after a request stay
//!   buffered for the next one), `Connection: close` / `keep-alive` ([`Request::keep_alive`]).
//! - Request bodies framed by `Content-Length` or by `Transfer-Encoding: chunked` (chunk
//!   extensions are accepted and ignored; trailer fields are checked and discarded).
//! - `Expect: 100-continue` ([`RequestParser::take_expect_continue`], [`CONTINUE_RESPONSE`]).
//! - Hard limits ([`Limits`]) on the head, the number of header fields and the body; memory held by
//!   a parser never exceeds [`RequestParser::capacity`] bytes of input, whatever a client sends.
//!
//! Anything malformed or over a limit is an [`HttpError`], which maps to the status code and
//! response to send ([`HttpError::response`]) before closing the connection.
//!
//! # Serving a connection
//! ```
//! use mayfly_http::{Limits, RequestParser, Response};
//!
//! /// Stands for the caller's transport: here, a client that pipelines two requests.
//! let mut incoming: Vec<&[u8]> =
//!     vec![b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /bye HTTP/1.1\r\nConnection: close\r\n\r\n"];
//! let mut sent = Vec::new();
//!
//! let mut parser = RequestParser::new(Limits::default());
//! 'connection: while let Some(mut data) = incoming.pop() {
//!     while !data.is_empty() {
//!         let taken = parser.push(data);
//!         data = &data[taken..];
//!         loop {
//!             match parser.next_request() {
//!                 Ok(Some(request)) => {
//!                     let keep_alive = request.keep_alive();
//!                     let body = format!("you asked for {}\n", request.path_without_query());
//!                     Response::text(200, &body).encode(keep_alive, &mut sent);
//!                     if !keep_alive {
//!                         break 'connection;
//!                     }
//!                 }
//!                 Ok(None) => break,
//!                 Err(error) => {
//!                     error.response().encode(false, &mut sent);
//!                     break 'connection;
//!                 }
//!             }
//!         }
//!     }
//! }
//! let sent = String::from_utf8(sent).unwrap();
//! assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(sent.ends_with("Connection: close\r\n\r\nyou asked for /bye\n"));
//! ```

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod error;
mod parser;
mod request;
mod response;

#[cfg(test)]
mod tests;

pub use error::HttpError;
pub use parser::{CHUNK_LINE_MAX, Limits, RequestParser};
pub use request::Request;
pub use response::{CONTINUE_RESPONSE, Response, reason_phrase};
