//! A server that answers inline `PING` commands the way Redis does, so
//! `redis-benchmark -t ping_inline` can drive it:
//!
//! ```text
//! $ cargo run --release --example ping -- --addr 127.0.0.1:6379
//! $ redis-benchmark -p 6379 -t ping_inline -n 100000 -c 50
//! ```
//!
//! Each line (`\n`, or `\r\n`) holding `PING` (any case, surrounding spaces
//! ignored) gets `+PONG\r\n`; any other non-blank line gets
//! `-ERR unknown command\r\n`; blank lines get nothing. Only inline commands
//! are understood, not RESP arrays (`*1\r\n$4\r\nPING\r\n` gets one error
//! per line), so run redis-benchmark's inline test only.

#[path = "common/mod.rs"]
mod common;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use evmux::codec::{Codec, DecodeError, Decoded, Lines};
use evmux::{Conn, Handler};

/// Answers inline `PING` with `+PONG`.
#[derive(Parser, Debug)]
#[command(name = "ping")]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,
}

/// Inline commands in, simple replies out: lines are decoded as by
/// [`Lines`] (a `\r` before the `\n` is dropped); replies are encoded with
/// the `\r\n` ending RESP requires, where `Lines` would write `\n`.
#[derive(Clone, Debug)]
struct Inline(Lines);

impl Codec for Inline {
    fn decode(&mut self, buf: &[u8]) -> Result<Option<Decoded>, DecodeError> {
        self.0.decode(buf)
    }

    fn encode(&mut self, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if let Some(at) = payload.iter().position(|&b| b == b'\r' || b == b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inline encode: line break inside the reply at byte {at}"),
            ));
        }
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Replies `+PONG` to `PING`, an error to anything else.
struct Ping;

impl Handler for Ping {
    fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
        let command = trim(line);
        let reply: &[u8] = if command.is_empty() {
            return;
        } else if command.eq_ignore_ascii_case(b"PING") {
            b"+PONG"
        } else {
            b"-ERR unknown command"
        };
        if let Err(e) = conn.send(reply) {
            log::warn!("{}: reply: {e}; closing", conn.id());
            conn.close();
        }
    }
}

/// `bytes` without ASCII white space at either end.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => &bytes[start..=end],
        _ => &[],
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let codec = Inline(Lines::new().max_frame(args.server.max_frame));
    common::run("ping", &args.server, codec, &mut Ping)
}
