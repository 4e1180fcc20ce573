//! A JSON service on axum, tokio and serde: unchanged crates.io code that runs natively and as a
//! Mayfly unikernel (`mayfly run --publish 8080:80 examples/axum-hello`).
//!
//! Routes: `GET /` (text), `GET /json` (a JSON document), `POST /echo` (a JSON message back,
//! with its length). Arguments: the port (default 80); `prefix=/p` serves the routes under `/p`
//! (as `mayfly serve`'s built-in configuration does on `/axum`).
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Message {
    text: String,
}

#[derive(Serialize)]
struct Echo {
    text: String,
    length: usize,
}

async fn hello() -> &'static str {
    "hello from axum\n"
}

async fn json() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "hello": "from axum", "numbers": [1, 2, 3] }))
}

async fn echo(Json(message): Json<Message>) -> Json<Echo> {
    let length = message.text.chars().count();
    Json(Echo { text: message.text, length })
}

fn routes() -> Router {
    Router::new().route("/", get(hello)).route("/json", get(json)).route("/echo", post(echo))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(80);
    let app = match args.iter().find_map(|a| a.strip_prefix("prefix=")) {
        Some(prefix) if prefix != "/" && !prefix.is_empty() => Router::new().nest(prefix, routes()),
        _ => routes(),
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("listening on port {}", listener.local_addr()?.port());
    axum::serve(listener, app).await
}
