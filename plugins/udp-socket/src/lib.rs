//! `udp-socket` (hostile): tries to create and bind a UDP socket. Sockets are
//! denied, so the call must fail inside the guest (never crash the host); the
//! plugin then rejects with **403** and the error, which the test checks.
//! Were the socket granted, it would accept, and the test would fail.

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct UdpSocket;

impl Plugin for UdpSocket {
    fn handle(_trigger: Trigger) -> Verdict {
        match std::net::UdpSocket::bind("0.0.0.0:0") {
            Ok(_) => Verdict::accept_unchanged(),
            Err(e) => Verdict::reject(403, format!("udp socket denied: {e}")),
        }
    }
}

export_plugin!(UdpSocket);
