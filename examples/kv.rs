//! An in-memory key-value server speaking the Redis protocol (RESP2), so
//! `redis-cli`, `redis-benchmark` and Redis client libraries can talk to it:
//!
//! ```text
//! $ cargo run --release --example kv -- --addr 127.0.0.1:6380
//! listening on 127.0.0.1:6380 backend=epoll trigger=edge
//! $ redis-cli -p 6380 set a 1
//! OK
//! $ redis-cli -p 6380 get a
//! "1"
//! ```
//!
//! Commands (names in any case), with Redis's replies and error messages:
//! `PING [message]`, `ECHO message`,
//! `SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|KEEPTTL]`,
//! `GET key`, `DEL key...`, `EXISTS key...`, `INCR key`, `DECR key`,
//! `INCRBY key n`, `DECRBY key n` (what redis-py's `incr` and `decr` send),
//! `MSET key value...`, `MGET key...`, `DBSIZE`, `FLUSHALL [ASYNC|SYNC]`,
//! `QUIT`, and what clients ask on connecting: `COMMAND` (`COUNT`, `DOCS`,
//! `INFO`: no documentation), `CONFIG GET pattern...` (`save` is empty,
//! `appendonly` is `no`: nothing is persisted), `HELLO [2]` (RESP2 only:
//! `HELLO 3` gets Redis's `-NOPROTO` error). Anything else gets
//! `-ERR unknown command '...', with args beginning with: ...`.
//!
//! Keys with a time to live are hidden as soon as it runs out (checked on
//! every access) and removed by a reactor timer set for that moment.
//! `--max-frame` bounds a request (default 64 KiB, headers included); a
//! longer one closes its connection, and so does a malformed one (the
//! reactor closes without a reply for now; Redis answers
//! `-ERR Protocol error: ...` first).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use evmux::codec::resp::{self, Args};
use evmux::codec::Resp;
use evmux::{CloseReason, Conn, ConnId, Control, Handler, TimerId};

/// An in-memory key-value server for Redis clients.
#[derive(Parser, Debug)]
#[command(name = "kv")]
struct KvArgs {
    #[command(flatten)]
    server: common::ServerArgs,
}

/// The commands `COMMAND COUNT` counts.
const COMMANDS: i64 = 18;

/// Redis's error for a value or argument that is not a 64-bit integer.
const NOT_AN_INTEGER: &[u8] = b"ERR value is not an integer or out of range";

/// The configuration `CONFIG GET` reports: no persistence of any kind.
const CONFIG: [(&str, &str); 2] = [("save", ""), ("appendonly", "no")];

/// One stored value and, if it has one, when it expires.
struct Entry {
    value: Vec<u8>,
    expiry: Option<Expiry>,
}

/// When a key expires, and the reactor timer that removes it then.
#[derive(Clone, Copy)]
struct Expiry {
    at: Instant,
    timer: TimerId,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expiry.map_or(true, |e| e.at > now)
    }
}

/// What a command asks of the connection besides its reply.
enum After {
    Reply,
    /// Reply, then close once the reply is flushed.
    Close,
}

/// The store, and the scratch buffer replies are built in.
#[derive(Default)]
struct Kv {
    keys: HashMap<Vec<u8>, Entry>,
    /// The key each pending expiry timer removes.
    expiring: HashMap<TimerId, Vec<u8>>,
    /// Client ids for `HELLO`, numbered from 1 in order of connection.
    clients: HashMap<ConnId, u64>,
    last_client: u64,
    reply: Vec<u8>,
}

impl Handler for Kv {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.last_client += 1;
        self.clients.insert(conn.id(), self.last_client);
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, frame: &[u8]) {
        let mut args = Args::new(frame);
        let Some(name) = args.next() else {
            return; // an empty command: Redis ignores it
        };
        self.reply.clear();
        let id = conn.id();
        let after = self.execute(conn.control(), id, name, args);
        if let Err(e) = conn.send(&self.reply) {
            log::warn!("{}: reply: {e}; closing", conn.id());
            conn.close();
            return;
        }
        if let After::Close = after {
            conn.shutdown();
        }
    }

    fn on_timer(&mut self, _ctl: &mut Control<'_>, timer: TimerId) {
        let Some(key) = self.expiring.remove(&timer) else {
            return;
        };
        let current = self.keys.get(&key).and_then(|e| e.expiry);
        if current.is_some_and(|e| e.timer == timer) {
            self.keys.remove(&key);
        }
    }

    fn on_close(&mut self, id: ConnId, _reason: CloseReason) {
        self.clients.remove(&id);
    }
}

impl Kv {
    /// Runs one command, appending its reply to `self.reply`.
    fn execute(&mut self, ctl: &mut Control<'_>, id: ConnId, name: &[u8], args: Args<'_>) -> After {
        let mut lower = [0u8; 16];
        let Some(command) = lowercase(name, &mut lower) else {
            self.unknown(name, args);
            return After::Reply;
        };
        let argc = args.len() + 1;
        let out = &mut self.reply;
        match (command, argc) {
            (b"ping", 1) => resp::simple(out, b"PONG"),
            (b"ping", 2) | (b"echo", 2) => resp::bulk(out, first(args)),
            (b"get", 2) => {
                let key = first(args);
                match self.keys.get(key).filter(|e| e.is_live(ctl.now())) {
                    Some(entry) => resp::bulk(out, &entry.value),
                    None => resp::null_bulk(out),
                }
            }
            (b"set", 3..) => self.set(ctl, args),
            (b"del", 2..) => {
                let now = ctl.now();
                let mut removed = 0;
                for key in args {
                    if let Some(entry) = self.keys.remove(key) {
                        removed += i64::from(entry.is_live(now));
                        forget(ctl, &mut self.expiring, entry.expiry);
                    }
                }
                resp::integer(&mut self.reply, removed);
            }
            (b"exists", 2..) => {
                let now = ctl.now();
                let live = args
                    .filter(|key| self.keys.get(*key).is_some_and(|e| e.is_live(now)))
                    .count();
                resp::integer(out, live as i64);
            }
            (b"incr", 2) => self.add(ctl, first(args), 1),
            (b"decr", 2) => self.add(ctl, first(args), -1),
            (b"incrby" | b"decrby", 3) => {
                let mut args = args;
                let key = args.next().unwrap_or_default();
                let by = parse_i64(args.next().unwrap_or_default());
                // DECRBY of i64::MIN cannot be negated.
                let delta = match (command, by) {
                    (b"incrby", Some(by)) => Some(by),
                    (_, Some(by)) => by.checked_neg(),
                    (_, None) => None,
                };
                match (delta, by) {
                    (Some(delta), _) => self.add(ctl, key, delta),
                    (None, Some(_)) => resp::error(out, b"ERR decrement would overflow"),
                    (None, None) => resp::error(out, NOT_AN_INTEGER),
                }
            }
            (b"mset", n) if n >= 3 && n % 2 == 1 => {
                let mut args = args;
                while let (Some(key), Some(value)) = (args.next(), args.next()) {
                    self.store(ctl, key, value, None);
                }
                resp::simple(&mut self.reply, b"OK");
            }
            (b"mget", 2..) => {
                let now = ctl.now();
                resp::array(out, args.len());
                for key in args {
                    match self.keys.get(key).filter(|e| e.is_live(now)) {
                        Some(entry) => resp::bulk(out, &entry.value),
                        None => resp::null_bulk(out),
                    }
                }
            }
            (b"dbsize", 1) => resp::integer(out, self.keys.len() as i64),
            (b"flushall", 1) => self.flush(ctl),
            (b"flushall", 2) => {
                let mode = first(args);
                if mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync") {
                    self.flush(ctl);
                } else {
                    resp::error(out, b"ERR syntax error");
                }
            }
            (b"quit", _) => {
                resp::simple(out, b"OK");
                return After::Close;
            }
            (b"command", _) => command_reply(out, args),
            (b"config", 2..) => config_reply(out, args),
            (b"hello", _) => {
                let client = self.clients.get(&id).copied().unwrap_or(0);
                hello_reply(out, client, args);
            }
            (
                b"ping" | b"echo" | b"get" | b"set" | b"del" | b"exists" | b"incr" | b"decr"
                | b"incrby" | b"decrby" | b"mset" | b"mget" | b"dbsize" | b"flushall" | b"config",
                _,
            ) => wrong_arity(out, command),
            _ => self.unknown(name, args),
        }
        After::Reply
    }

    /// `SET key value [NX|XX] [GET] [EX seconds|PX milliseconds|KEEPTTL]`,
    /// checked as Redis 7 does: options first (`syntax error`), then the
    /// expire time.
    fn set(&mut self, ctl: &mut Control<'_>, mut args: Args<'_>) {
        let (Some(key), Some(value)) = (args.next(), args.next()) else {
            return wrong_arity(&mut self.reply, b"set");
        };
        let mut only = None; // Some(true): NX, Some(false): XX
        let mut get = false;
        let mut ttl: Option<(&[u8], u64)> = None; // the text and its unit in ms
        let mut keep_ttl = false;
        while let Some(option) = args.next() {
            let is = |word: &[u8]| option.eq_ignore_ascii_case(word);
            let ok = if is(b"nx") || is(b"xx") {
                let nx = is(b"nx");
                let fits = only.map_or(true, |o| o == nx);
                only = Some(nx);
                fits
            } else if is(b"get") {
                get = true;
                true
            } else if is(b"keepttl") {
                keep_ttl = true;
                ttl.is_none()
            } else if is(b"ex") || is(b"px") {
                let unit = if is(b"ex") { 1000 } else { 1 };
                let same = ttl.map_or(true, |(_, u)| u == unit);
                match args.next() {
                    Some(text) if same && !keep_ttl => {
                        ttl = Some((text, unit));
                        true
                    }
                    _ => false,
                }
            } else {
                false
            };
            if !ok {
                return resp::error(&mut self.reply, b"ERR syntax error");
            }
        }
        let expires = match ttl {
            None => None,
            Some((text, unit)) => match expire_after(text, unit) {
                Ok(after) => Some(after),
                Err(message) => return resp::error(&mut self.reply, message),
            },
        };
        let now = ctl.now();
        let old = self.keys.get(key).filter(|e| e.is_live(now));
        let exists = old.is_some();
        if get {
            match old {
                Some(entry) => resp::bulk(&mut self.reply, &entry.value),
                None => resp::null_bulk(&mut self.reply),
            }
        }
        if only.is_some_and(|nx| nx == exists) {
            if !get {
                resp::null_bulk(&mut self.reply);
            }
            return;
        }
        let expiry = match expires {
            Some(after) => Some(after),
            None if keep_ttl => old.and_then(|e| e.expiry).map(|e| e.at - now),
            None => None,
        };
        self.store(ctl, key, value, expiry);
        if !get {
            resp::simple(&mut self.reply, b"OK");
        }
    }

    /// Stores `value` under `key`, expiring `ttl` from now (or never);
    /// reuses the key's buffers when it exists.
    fn store(&mut self, ctl: &mut Control<'_>, key: &[u8], value: &[u8], ttl: Option<Duration>) {
        let expiry = ttl.map(|after| {
            let timer = ctl.set_timer(after);
            self.expiring.insert(timer, key.to_vec());
            Expiry {
                at: ctl.now() + after,
                timer,
            }
        });
        match self.keys.get_mut(key) {
            Some(entry) => {
                forget(ctl, &mut self.expiring, entry.expiry);
                entry.value.clear();
                entry.value.extend_from_slice(value);
                entry.expiry = expiry;
            }
            None => {
                let entry = Entry {
                    value: value.to_vec(),
                    expiry,
                };
                self.keys.insert(key.to_vec(), entry);
            }
        }
    }

    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`: adds `delta` to the integer stored at `key` (0 if
    /// none), keeping its time to live; the value is rewritten in place.
    fn add(&mut self, ctl: &mut Control<'_>, key: &[u8], delta: i64) {
        let now = ctl.now();
        let next = match self.keys.get_mut(key) {
            Some(entry) if entry.is_live(now) => {
                let Some(current) = parse_i64(&entry.value) else {
                    return resp::error(&mut self.reply, NOT_AN_INTEGER);
                };
                let Some(next) = current.checked_add(delta) else {
                    return resp::error(
                        &mut self.reply,
                        b"ERR increment or decrement would overflow",
                    );
                };
                entry.value.clear();
                decimal(&mut entry.value, next);
                next
            }
            _ => {
                let mut text = Vec::with_capacity(20);
                decimal(&mut text, delta);
                self.store(ctl, key, &text, None);
                delta
            }
        };
        resp::integer(&mut self.reply, next);
    }

    fn flush(&mut self, ctl: &mut Control<'_>) {
        for timer in self.expiring.keys() {
            ctl.cancel_timer(*timer);
        }
        self.expiring.clear();
        self.keys.clear();
        resp::simple(&mut self.reply, b"OK");
    }

    /// Redis 7's reply to an unknown command: the name and the first
    /// arguments, quoted, each cut at 128 bytes (and at a NUL, as C's
    /// `%s` does).
    fn unknown(&mut self, name: &[u8], args: Args<'_>) {
        let mut text = b"ERR unknown command '".to_vec();
        text.extend_from_slice(c_str(name, 128));
        text.extend_from_slice(b"', with args beginning with: ");
        let start = text.len();
        for arg in args {
            let used = text.len() - start;
            if used >= 128 {
                break;
            }
            text.push(b'\'');
            text.extend_from_slice(c_str(arg, 128 - used));
            text.extend_from_slice(b"' ");
        }
        resp::error(&mut self.reply, &text);
    }
}

/// Cancels an expiry's timer, if there is one.
fn forget(ctl: &mut Control<'_>, expiring: &mut HashMap<TimerId, Vec<u8>>, expiry: Option<Expiry>) {
    if let Some(expiry) = expiry {
        ctl.cancel_timer(expiry.timer);
        expiring.remove(&expiry.timer);
    }
}

/// The first argument after the name (the arity was checked).
fn first<'a>(mut args: Args<'a>) -> &'a [u8] {
    args.next().unwrap_or_default()
}

/// `name` in lowercase in `buf`, or `None` if longer than any command.
fn lowercase<'b>(name: &[u8], buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    let lower = buf.get_mut(..name.len())?;
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    Some(lower)
}

/// Appends `n` in decimal (what `INCR` stores), without `fmt`'s machinery.
fn decimal(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// `text` up to its first NUL, at most `max` bytes.
fn c_str(text: &[u8], max: usize) -> &[u8] {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    &text[..end.min(max)]
}

fn wrong_arity(out: &mut Vec<u8>, command: &[u8]) {
    let mut text = b"ERR wrong number of arguments for '".to_vec();
    text.extend_from_slice(command);
    text.extend_from_slice(b"' command");
    resp::error(out, &text);
}

/// A signed 64-bit decimal as Redis's `string2ll` reads it: no sign but a
/// leading `-`, no leading zeros, no spaces, within range.
fn parse_i64(text: &[u8]) -> Option<i64> {
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) {
        return None;
    }
    let mut n: i64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        let d = i64::from(digit - b'0');
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// `EX` / `PX`'s argument as a time to live, with Redis's errors: not an
/// integer, or not positive, or past what a 64-bit millisecond Unix time
/// can hold.
fn expire_after(text: &[u8], unit_ms: u64) -> Result<Duration, &'static [u8]> {
    const INVALID: &[u8] = b"ERR invalid expire time in 'set' command";
    let n = parse_i64(text).ok_or(NOT_AN_INTEGER)?;
    let n = u64::try_from(n).ok().filter(|&n| n > 0).ok_or(INVALID)?;
    let ms = n.checked_mul(unit_ms).ok_or(INVALID)?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    match ms.checked_add(now_ms) {
        Some(at) if at <= i64::MAX as u64 => Ok(Duration::from_millis(ms)),
        _ => Err(INVALID),
    }
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS`, `COMMAND INFO`: enough for
/// redis-cli (which asks for `DOCS` to offer hints) and client libraries;
/// no command documentation is kept.
fn command_reply(out: &mut Vec<u8>, mut args: Args<'_>) {
    let Some(sub) = args.next() else {
        return resp::array(out, 0);
    };
    if sub.eq_ignore_ascii_case(b"count") {
        match args.len() {
            0 => resp::integer(out, COMMANDS),
            _ => wrong_arity(out, b"command|count"),
        }
    } else if sub.eq_ignore_ascii_case(b"docs") {
        resp::array(out, 0); // an empty map, in RESP2
    } else if sub.eq_ignore_ascii_case(b"info") {
        resp::array(out, args.len());
        for _ in args {
            resp::null_bulk(out);
        }
    } else {
        unknown_subcommand(out, sub, b"COMMAND");
    }
}

/// `CONFIG GET pattern...`: the parameters in [`CONFIG`] whose names match
/// a glob pattern, as a flat array of names and values.
fn config_reply(out: &mut Vec<u8>, mut args: Args<'_>) {
    let sub = args.next().unwrap_or_default();
    if !sub.eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(out, sub, b"CONFIG");
    }
    if args.len() == 0 {
        return wrong_arity(out, b"config|get");
    }
    let patterns: Vec<&[u8]> = args.collect();
    let matched: Vec<(&str, &str)> = CONFIG
        .into_iter()
        .filter(|(name, _)| patterns.iter().any(|p| glob(p, name.as_bytes())))
        .collect();
    resp::array(out, matched.len() * 2);
    for (name, value) in matched {
        resp::bulk(out, name.as_bytes());
        resp::bulk(out, value.as_bytes());
    }
}

fn unknown_subcommand(out: &mut Vec<u8>, sub: &[u8], command: &[u8]) {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(c_str(sub, 128));
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(command);
    text.extend_from_slice(b" HELP.");
    resp::error(out, &text);
}

/// Case-insensitive glob match with `*` and `?` (what `CONFIG GET` takes).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((&p, rest)) => match name.split_first() {
            Some((&n, name_rest)) => {
                (p == b'?' || p.eq_ignore_ascii_case(&n)) && glob(rest, name_rest)
            }
            None => false,
        },
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: RESP2 only. The
/// reply is Redis's map, flattened into an array as RESP2 does. There is no
/// authentication: `AUTH` is accepted whatever it says, as by a Redis whose
/// default user has no password.
fn hello_reply(out: &mut Vec<u8>, client: u64, mut args: Args<'_>) {
    if let Some(version) = args.next() {
        match parse_i64(version) {
            Some(2) => {}
            Some(_) => return resp::error(out, b"NOPROTO unsupported protocol version"),
            None => {
                return resp::error(
                    out,
                    b"ERR Protocol version is not an integer or out of range",
                )
            }
        }
        while let Some(option) = args.next() {
            let taken = if option.eq_ignore_ascii_case(b"auth") {
                2
            } else if option.eq_ignore_ascii_case(b"setname") {
                1
            } else {
                0
            };
            if taken == 0 || args.len() < taken {
                let mut text = b"ERR Syntax error in HELLO option '".to_vec();
                text.extend_from_slice(c_str(option, 128));
                text.push(b'\'');
                return resp::error(out, &text);
            }
            args.nth(taken - 1);
        }
    }
    resp::array(out, 14);
    for (field, value) in [
        ("server", "evmux-kv"),
        ("version", env!("CARGO_PKG_VERSION")),
    ] {
        resp::bulk(out, field.as_bytes());
        resp::bulk(out, value.as_bytes());
    }
    resp::bulk(out, b"proto");
    resp::integer(out, 2);
    resp::bulk(out, b"id");
    resp::integer(out, i64::try_from(client).unwrap_or(i64::MAX));
    for (field, value) in [("mode", "standalone"), ("role", "master")] {
        resp::bulk(out, field.as_bytes());
        resp::bulk(out, value.as_bytes());
    }
    resp::bulk(out, b"modules");
    resp::array(out, 0);
}

fn main() -> ExitCode {
    let args = KvArgs::parse();
    let codec = Resp::new().max_request(args.server.max_frame);
    common::run("kv", &args.server, codec, &mut Kv::default())
}
