//! A reference echo server on tokio's single-threaded runtime, for
//! benches/e2e.sh: every byte comes back as it arrives, like
//! examples/echo.rs, with `TCP_NODELAY` set as evmux's reactor sets it.
//!
//! ```text
//! $ cargo run --release --example tokio_echo -- --addr 127.0.0.1:0
//! listening on 127.0.0.1:41234 backend=tokio trigger=edge
//! ```
//!
//! It prints the same `listening on ...` line as the evmux servers (tokio
//! sits on edge-triggered epoll through mio), so scripts treat all alike.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Per-connection read buffer.
const BUF: usize = 16 * 1024;

/// A tokio echo server (single thread), the reference for the benchmarks.
#[derive(Parser, Debug)]
#[command(name = "tokio_echo")]
struct Args {
    /// The address to listen on; port 0 picks a free port
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:7878")]
    addr: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .and_then(|rt| rt.block_on(serve(&args.addr)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokio_echo: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {local} backend=tokio trigger=edge")?;
    out.flush()?;
    drop(out);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(echo(stream));
            }
            Err(e) => {
                // EMFILE and friends: wait for connections to go away.
                eprintln!("tokio_echo: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Echoes until EOF or an error, then drops the connection.
async fn echo(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
