//! Loopback ports reserved by a socket the test holds, never found free by
//! binding and dropping one (anyone could take it before the test uses it).

use std::net::SocketAddr;

/// A TCP port on 127.0.0.1 that refuses every connection for as long as the
/// returned socket lives: the socket is bound but never listens, so a
/// connection gets a reset and no other program can take the port meanwhile.
pub fn refused_tcp_port() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = s.local_addr().expect("addr");
    (s, addr)
}

/// A UDP port on 127.0.0.1 that answers every datagram with "port
/// unreachable" for as long as the returned socket lives: the socket is
/// connected to one peer (itself), so the kernel delivers it nothing from
/// anyone else and refuses them, while the port stays reserved.
pub fn refused_udp_port() -> (std::net::UdpSocket, SocketAddr) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = s.local_addr().expect("addr");
    s.connect(addr).expect("connect to itself");
    (s, addr)
}

/// Like [`refused_tcp_port`], with `SO_REUSEPORT`: while the returned socket
/// lives, connecting is refused and no other program can take the port
/// (only sockets that also ask for `SO_REUSEPORT` may share it, and only a
/// listening one is connected to), so a test can start and stop a listener
/// of its own on it ([`listen_reuseport`]) as often as it likes.
pub fn reserved_reuseport() -> (tokio::net::TcpSocket, SocketAddr) {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.set_reuseport(true).expect("SO_REUSEPORT");
    s.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = s.local_addr().expect("addr");
    (s, addr)
}

/// A listener on a port [`reserved_reuseport`] holds.
pub fn listen_reuseport(addr: SocketAddr) -> tokio::net::TcpListener {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_reuseport(true).expect("SO_REUSEPORT");
    socket.bind(addr).expect("bind the reserved port");
    socket.listen(128).expect("listen")
}
