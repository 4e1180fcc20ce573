//! Notes kept in PostgreSQL, served over HTTP: `PUT /notes/<key>` stores the body, `GET
//! /notes/<key>` answers it (404 if there is none). Unchanged crates.io code (hyper, tokio,
//! tokio-postgres) that runs natively and as a Mayfly unikernel, where the database on the host
//! is reached at 10.0.2.2 through `--allow-host-port <port>`.
//!
//! The database comes from the environment: `PG_HOST` (an IP address: a unikernel has no name
//! resolution; default 10.0.2.2, the host under user-mode networking), `PG_PORT` (5432),
//! `PG_USER` (postgres), `PG_PASSWORD` (none), `PG_DBNAME` (the user's name).
//! Argument: the port to listen on (default 80).
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The largest note accepted, bytes.
const MAX_NOTE: usize = 1 << 20;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// `PG_*` from the environment; a bad value is an error naming the variable.
fn database_config() -> Result<tokio_postgres::Config, String> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let host = var("PG_HOST", "10.0.2.2");
    let addr: IpAddr = host
        .parse()
        .map_err(|_| format!("PG_HOST={host:?} is not an IP address (there is no DNS here)"))?;
    let port = var("PG_PORT", "5432");
    let port: u16 = port.parse().map_err(|_| format!("PG_PORT={port:?} is not a port number"))?;
    let user = var("PG_USER", "postgres");
    let mut config = tokio_postgres::Config::new();
    config.hostaddr(addr).port(port).user(&user).dbname(var("PG_DBNAME", &user));
    if let Ok(password) = std::env::var("PG_PASSWORD") {
        config.password(password);
    }
    Ok(config)
}

async fn handle(
    db: Arc<tokio_postgres::Client>,
    request: Request<hyper::body::Incoming>,
) -> Result<Reply, hyper::Error> {
    let Some(key) = request.uri().path().strip_prefix("/notes/").map(str::to_owned) else {
        return Ok(reply(StatusCode::NOT_FOUND, "no such path: use /notes/<key>\n"));
    };
    if key.is_empty() {
        return Ok(reply(StatusCode::BAD_REQUEST, "the key is empty: use /notes/<key>\n"));
    }
    let stored = match *request.method() {
        Method::GET => db.query_opt("SELECT body FROM notes WHERE key = $1", &[&key]).await.map(
            |row| match row {
                Some(row) => reply(StatusCode::OK, row.get::<_, Vec<u8>>(0)),
                None => reply(StatusCode::NOT_FOUND, format!("no note {key:?}\n")),
            },
        ),
        Method::PUT => {
            let body = request.into_body().collect().await?.to_bytes();
            if body.len() > MAX_NOTE {
                return Ok(reply(StatusCode::PAYLOAD_TOO_LARGE, "a note is at most 1 MiB\n"));
            }
            db.execute(
                "INSERT INTO notes (key, body) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET body = EXCLUDED.body",
                &[&key, &body.as_ref()],
            )
            .await
            .map(|_| reply(StatusCode::NO_CONTENT, Bytes::new()))
        }
        _ => return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT\n")),
    };
    Ok(stored.unwrap_or_else(|e| {
        let e = with_cause(&e);
        println!("pg-notes: database error: {e}");
        reply(StatusCode::SERVICE_UNAVAILABLE, format!("database error: {e}\n"))
    }))
}

#[tokio::main]
async fn main() {
    if let Err(e) = serve().await {
        println!("pg-notes: {e}");
        std::process::exit(1);
    }
}

/// `e` and its cause (tokio-postgres says "error connecting to server" and keeps the why there).
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

async fn serve() -> Result<(), String> {
    let port: u16 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(80);
    let config = database_config()?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot reach PostgreSQL: {}", with_cause(&e)))?;
    // The connection runs beside the server; when it ends, so does the service (a new instance
    // connects again), rather than answering every request with an error.
    tokio::spawn(async move {
        let ended = connection.await;
        println!("pg-notes: the database connection ended: {ended:?}");
        std::process::exit(1);
    });
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS notes (key text PRIMARY KEY, body bytea NOT NULL)",
        )
        .await
        .map_err(|e| format!("cannot create the notes table: {}", with_cause(&e)))?;
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    println!("pg-notes: listening on port {port}");
    let db = Arc::new(client);
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        let db = db.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(db.clone(), request));
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                println!("pg-notes: connection error: {e}");
            }
        });
    }
}
