//! Backends chosen at run time: `Backend` names, `AnyPoller` on every
//! backend this build has (a reactor serving through it on each trigger),
//! `EVMUX_BACKEND`, and a backend that cannot start (blocked by a seccomp
//! filter in a re-executed child) reported as its own error, with a
//! fallback only where one was asked for.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::thread;

use evmux::codec::Lines;
use evmux::{
    AnyPoller, Backend, Config, Conn, Handler, Poller, Reactor, Token, Trigger, BACKEND_ENV,
};

struct Echo;

impl Handler for Echo {
    fn on_frame(&mut self, conn: &mut Conn<'_>, line: &[u8]) {
        let _ = conn.send(line);
    }
}

/// `None` (and a printed reason) where the backend cannot start here.
fn start(backend: Backend) -> Option<AnyPoller> {
    match AnyPoller::with_backend(backend) {
        Ok(poller) => Some(poller),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("skipped: the {backend} backend cannot run here: {e}");
            None
        }
        Err(e) => panic!("{backend}: {e}"),
    }
}

#[test]
fn names_parse_and_print() {
    for backend in Backend::ALL {
        let parsed = backend.name().parse::<Backend>();
        match parsed {
            Ok(b) => {
                assert!(backend.is_built());
                assert_eq!(b, backend);
                assert_eq!(b.to_string(), backend.name());
                let shouted = format!(" {} ", backend.name().to_uppercase());
                assert_eq!(shouted.parse::<Backend>().unwrap(), backend);
            }
            Err(e) => {
                assert!(!backend.is_built(), "{backend}: {e}");
                assert_eq!(e.kind(), ErrorKind::InvalidInput);
                assert!(e.to_string().contains("not in this build"), "{e}");
            }
        }
    }
    let e = "kqueue".parse::<Backend>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let list: Vec<&str> = Backend::built().iter().map(|b| b.name()).collect();
    assert!(e.to_string().ends_with(&list.join(", ")), "{e}");
}

#[test]
fn built_list_matches_the_features() {
    let features = [
        (Backend::Select, cfg!(feature = "select")),
        (Backend::Poll, cfg!(feature = "poll")),
        (
            Backend::Epoll,
            cfg!(all(feature = "epoll", target_os = "linux")),
        ),
        (
            Backend::Uring,
            cfg!(all(feature = "uring", target_os = "linux")),
        ),
    ];
    for (backend, on) in features {
        assert_eq!(backend.is_built(), on, "{backend}");
    }
    assert_eq!(Backend::best().name(), evmux::DefaultPoller::NAME);
}

#[test]
fn any_poller_answers_for_the_backend_it_picked() {
    for &backend in Backend::built() {
        let Some(poller) = start(backend) else {
            continue;
        };
        assert_eq!(poller.backend(), backend);
        assert_eq!(poller.name(), backend.name());
        for trigger in [Trigger::Level, Trigger::Edge, Trigger::Oneshot] {
            assert_eq!(
                poller.has_trigger(trigger),
                backend.supports_trigger(trigger),
                "{backend} {trigger}"
            );
        }
        let select = backend == Backend::Select;
        assert_eq!(poller.fd_limit().is_some(), select, "{backend}");
    }
}

/// A reactor on `AnyPoller` serves on every backend and trigger, names
/// the backend in use, and defaults to edge where the backend has it.
#[test]
fn reactor_serves_through_any_poller() {
    for &backend in Backend::built() {
        for asked in [None, Some(Trigger::Level), Some(Trigger::Edge)] {
            if asked.is_some_and(|t| !backend.supports_trigger(t)) {
                continue;
            }
            let Some(poller) = start(backend) else {
                continue;
            };
            let config = match asked {
                Some(trigger) => Config::default().trigger(trigger),
                None => Config::default(),
            };
            let reactor = Reactor::with_poller(poller, Lines::new(), config).unwrap();
            assert_eq!(reactor.backend(), backend.name());
            let edge = backend.supports_trigger(Trigger::Edge);
            let default = if edge { Trigger::Edge } else { Trigger::Level };
            assert_eq!(reactor.trigger(), asked.unwrap_or(default), "{backend}");
            echo_through(reactor);
        }
    }
}

#[test]
fn edge_on_a_level_backend_is_unsupported() {
    for &backend in Backend::built() {
        if backend.supports_trigger(Trigger::Edge) {
            continue;
        }
        let poller = start(backend).unwrap();
        let config = Config::default().trigger(Trigger::Edge);
        let e = Reactor::with_poller(poller, Lines::new(), config)
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{backend}: {e}");
        assert!(e.to_string().contains(backend.name()), "{e}");
    }
}

#[test]
fn a_poller_with_a_waker_already_is_refused() {
    let Some(mut poller) = start(Backend::best()) else {
        return;
    };
    let _waker = poller.waker(Token(1)).unwrap();
    let e = Reactor::with_poller(poller, Lines::new(), Config::default())
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
}

fn echo_through(mut reactor: Reactor<AnyPoller, Lines>) {
    let addr = reactor.listen("127.0.0.1:0").unwrap();
    let stop = reactor.stop_handle();
    let server = thread::spawn(move || reactor.run(&mut Echo).map(|()| reactor));
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(common::LONG)).unwrap();
    client.write_all(b"one\ntwo\n").unwrap();
    let mut reader = BufReader::new(client);
    let mut got = String::new();
    reader.read_line(&mut got).unwrap();
    reader.read_line(&mut got).unwrap();
    assert_eq!(got, "one\ntwo\n");
    stop.stop().unwrap();
    let reactor = server.join().unwrap().unwrap();
    assert_eq!(reactor.stats().frames_in, 2);
}

/// The only test of this binary that touches the environment.
#[test]
fn evmux_backend_picks_the_backend() {
    for &backend in Backend::built() {
        std::env::set_var(BACKEND_ENV, backend.name());
        assert_eq!(Backend::from_env().unwrap(), backend);
        if let Ok(poller) = AnyPoller::new() {
            assert_eq!(poller.backend(), backend);
        }
    }
    for unset in ["", "  "] {
        std::env::set_var(BACKEND_ENV, unset);
        assert_eq!(Backend::from_env().unwrap(), Backend::best());
    }
    std::env::set_var(BACKEND_ENV, "kqueue");
    let e = AnyPoller::new().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .starts_with("EVMUX_BACKEND=kqueue: unknown backend"),
        "{e}"
    );
    for backend in Backend::ALL.into_iter().filter(|b| !b.is_built()) {
        std::env::set_var(BACKEND_ENV, backend.name());
        let e = AnyPoller::new().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    std::env::remove_var(BACKEND_ENV);
    assert_eq!(Backend::from_env().unwrap(), Backend::best());
}

/// With epoll and io_uring blocked (as a seccomp policy can), asking for
/// either is that backend's error, and only `best_available` falls back.
#[cfg(target_os = "linux")]
#[test]
fn a_backend_that_cannot_start_is_its_own_error() {
    if !Backend::built()
        .iter()
        .any(|b| !b.supports_trigger(Trigger::Edge))
    {
        eprintln!("skipped: no select or poll backend built to fall back on");
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args(["--exact", "blocked_child", "--ignored", "--nocapture"]);
    child.env("EVMUX_TEST_BLOCKED", "1");
    let calls = [
        libc::SYS_io_uring_setup,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_create,
    ];
    common::deny_syscalls(&mut child, &calls);
    let out = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
}

/// Run by `a_backend_that_cannot_start_is_its_own_error`, under the filter.
#[test]
#[ignore = "run by a_backend_that_cannot_start_is_its_own_error"]
fn blocked_child() {
    assert!(
        std::env::var_os("EVMUX_TEST_BLOCKED").is_some(),
        "run by the parent test"
    );
    for backend in [Backend::Epoll, Backend::Uring] {
        if backend.is_built() {
            let e = AnyPoller::with_backend(backend).unwrap_err();
            assert!(
                e.to_string().contains("EPERM") || e.kind() == ErrorKind::PermissionDenied,
                "{backend}: {e}"
            );
        }
    }
    let first_level = *Backend::built()
        .iter()
        .find(|b| !b.supports_trigger(Trigger::Edge))
        .unwrap();
    assert_eq!(Backend::best_available().unwrap(), first_level);
    assert_eq!(AnyPoller::best_available().unwrap().backend(), first_level);
}
