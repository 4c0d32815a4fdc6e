//! A TCP or Unix-domain proxy on evmux: each client gets its own
//! connection to the upstream, and bytes go both ways unchanged (the
//! `Raw` codec), with backpressure across each pair and half-closes
//! passed on.
//!
//! ```text
//! $ cargo run --release --example echo -- --addr 127.0.0.1:7879 &
//! $ cargo run --release --example proxy -- --addr 127.0.0.1:7880 --upstream 127.0.0.1:7879
//! $ cargo run --release --example proxy -- --addr unix:/tmp/p.sock --upstream unix:/tmp/up.sock
//! ```

#[path = "common/mod.rs"]
mod common;
#[path = "proxy/handler.rs"]
mod handler;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use evmux::codec::Raw;
use evmux::{Endpoint, HalfClose};

/// A proxy: every client is connected to the upstream.
#[derive(Parser, Debug)]
#[command(name = "proxy")]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,

    /// Where to connect each client: HOST:PORT (an IP address) or unix:/path
    #[arg(long, value_name = "ADDR")]
    upstream: Endpoint,

    /// Give up connecting to the upstream after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    connect_timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.connect_timeout.max(1));
    let mut proxy = handler::Proxy::new(args.upstream, timeout);
    let config = args.server.config().half_close(HalfClose::KeepWriting);
    common::run_with("proxy", &args.server, config, Raw, &mut proxy)
}
