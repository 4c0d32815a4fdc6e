//! An echo server on evmux: every byte comes back as it arrives, with no
//! framing (the `Raw` codec), for throughput tests.
//!
//! ```text
//! $ cargo run --release --example echo -- --addr 127.0.0.1:7879
//! ```
//!
//! `--max-frame` is accepted like on the other servers but has no effect:
//! `Raw` has no frames to limit (each read is one "frame").

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;

use clap::Parser;
use evmux::codec::Raw;
use evmux::{Conn, Handler};

/// An echo server: every byte comes back as it arrives.
#[derive(Parser, Debug)]
#[command(name = "echo")]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
}

/// Sends back whatever arrives.
struct Echo;

impl Handler for Echo {
    fn on_frame(&mut self, conn: &mut Conn<'_>, bytes: &[u8]) {
        if let Err(e) = conn.send(bytes) {
            log::warn!("{}: echo: {e}; closing", conn.id());
            conn.close();
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::run("echo", &args.server, Raw, &mut Echo)
}
