//! `Control::send`: frames pushed to other connections (a chat relay) and
//! from timers, on every backend and trigger.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use evmux::codec::Lines;
use evmux::{Config, Conn, ConnId, Control, Handler, Poller, Reactor, TimerId, Trigger};

/// Relays every line to every other connection; `tick` asks for one
/// timer-driven `tock` to the sender 50 ms later; `bye` closes the sender's
/// peers by id.
#[derive(Default)]
struct Relay {
    members: Vec<ConnId>,
    ticks: Vec<(TimerId, ConnId)>,
}

impl Handler for Relay {
    fn on_open(&mut self, conn: &mut Conn<'_>) {
        self.members.push(conn.id());
        let _ = conn.send(b"welcome");
    }

    fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
        let me = conn.id();
        if line == b"tick" {
            let timer = conn.control().set_timer(Duration::from_millis(50));
            self.ticks.push((timer, me));
            return;
        }
        for &other in self.members.iter().filter(|&&m| m != me) {
            assert_eq!(conn.control().send(other, line), Ok(()));
        }
    }

    fn on_timer(&mut self, ctl: &mut Control<'_>, timer: TimerId) {
        if let Some(&(_, who)) = self.ticks.iter().find(|(t, _)| *t == timer) {
            assert_eq!(ctl.send(who, b"tock"), Ok(()));
        }
    }

    fn on_close(&mut self, id: ConnId, _: evmux::CloseReason) {
        self.members.retain(|&m| m != id);
    }
}

fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    reader.read_line(&mut s).expect("a line before the timeout");
    s
}

fn client(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    assert_eq!(line(&mut r), "welcome\n");
    (s, r)
}

fn relay_and_timer_sends<P: Poller>(trigger: Trigger) {
    let config = Config::default().trigger(trigger);
    let mut reactor = Reactor::<P, _>::new(Lines::new(), config).expect("reactor");
    let addr = reactor.listen("127.0.0.1:0").expect("listen");
    let stop = reactor.stop_handle();
    let (done, finished) = mpsc::channel();
    let server = thread::spawn(move || {
        let result = reactor.run(&mut Relay::default());
        let _ = done.send(());
        result.map(|()| reactor.stats().clone())
    });

    let (mut a, mut ra) = client(addr);
    let (mut b, mut rb) = client(addr);
    let (_c, mut rc) = client(addr);
    a.write_all(b"one\ntwo\n").expect("write");
    for r in [&mut rb, &mut rc] {
        assert_eq!(line(r), "one\n");
        assert_eq!(line(r), "two\n");
    }
    b.write_all(b"three\n").expect("write");
    assert_eq!(line(&mut ra), "three\n");
    assert_eq!(line(&mut rc), "three\n");

    a.write_all(b"tick\n").expect("write");
    assert_eq!(line(&mut ra), "tock\n");

    stop.stop().expect("stop");
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("run returned");
    let stats = server.join().expect("server thread").expect("run");
    // 3 welcomes, 2 lines to 2 peers, 1 line to 2 peers, 1 tock.
    assert_eq!(stats.frames_out, 3 + 4 + 2 + 1);
}

macro_rules! backend {
    ($name:ident, $poller:ty, $trigger:expr) => {
        #[test]
        fn $name() {
            if common::backend_available::<$poller>() {
                relay_and_timer_sends::<$poller>($trigger);
            }
        }
    };
}

evmux::for_each_trigger!(backend);
