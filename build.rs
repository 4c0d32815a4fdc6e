//! Names each backend's build condition once, as a cfg the crate's
//! sources use: `evmux_select`, `evmux_poll`, `evmux_epoll`, `evmux_uring`.
//! A backend is built when its cargo feature is on and the target has it
//! (epoll on Linux and Android, io_uring on Linux).

use std::env;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(evmux_select, evmux_poll, evmux_epoll, evmux_uring)");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let feature =
        |name: &str| env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase())).is_some();
    let built = [
        ("select", feature("select")),
        ("poll", feature("poll")),
        (
            "epoll",
            feature("epoll") && (os == "linux" || os == "android"),
        ),
        ("uring", feature("uring") && os == "linux"),
    ];
    for (name, on) in built {
        if on {
            println!("cargo:rustc-cfg=evmux_{name}");
        }
    }
}
