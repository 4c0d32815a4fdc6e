//! A network calculator on evmux.
//!
//! Requests are `<int> <op> <int>` (op one of `+ - * / %`, signed 64-bit
//! operands), each ended by a delimiter, `X` by default; each reply is the
//! result or an error, ended by the same delimiter:
//!
//! ```text
//! $ cargo run --release --example calc
//! listening on 127.0.0.1:7878 backend=epoll trigger=edge
//! $ printf '100+98X14+23X' | nc 127.0.0.1 7878
//! 198X37X
//! ```
//!
//! The errors are `ERR division by zero`, `ERR overflow` and
//! `ERR malformed request`; the connection stays open after one. The
//! language itself is in `proto.rs`.

#[path = "../common/mod.rs"]
mod common;
mod proto;

use std::process::ExitCode;

use clap::Parser;
use evmux::codec::Delimited;
use evmux::{Conn, Handler};

/// A network calculator: send `100+98X14+23X`, get `198X37X`.
#[derive(Parser, Debug)]
#[command(name = "calc")]
struct Args {
    #[command(flatten)]
    server: common::ServerArgs,

    /// What ends each request and reply; `\n`, `\r\n`, `\t` and `\\` are
    /// escapes
    #[arg(long, default_value = "X", value_parser = parse_delimiter)]
    delimiter: Delimiter,
}

/// The `--delimiter` bytes.
#[derive(Clone, Debug)]
struct Delimiter(Vec<u8>);

fn parse_delimiter(text: &str) -> Result<Delimiter, String> {
    common::unescape(text).map(Delimiter)
}

/// Answers every request frame with its result or error.
struct Calc;

impl Handler for Calc {
    fn on_frame(&mut self, conn: &mut Conn<'_>, request: &[u8]) {
        let mut buf = [0; 20];
        let Some(reply) = proto::answer(request, &mut buf) else {
            return; // a blank request gets no reply
        };
        if let Err(e) = conn.send(reply) {
            // The delimiter occurs in the reply (say `--delimiter 1`): the
            // peer could not tell where it ends.
            log::warn!("{}: reply: {e}; closing", conn.id());
            conn.shutdown();
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let codec = match Delimited::new(&args.delimiter.0) {
        Ok(codec) => codec.max_frame(args.server.max_frame),
        Err(e) => {
            eprintln!("calc: error: --delimiter: {e}");
            return ExitCode::FAILURE;
        }
    };
    common::run("calc", &args.server, codec, &mut Calc)
}
