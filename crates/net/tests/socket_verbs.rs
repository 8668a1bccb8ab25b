//! The socket verbs below the binary: the socket core's two faces
//! (`component`, for WASI 0.2/0.3; `posix`, for the sockets a preview1
//! guest opens) and the listener they share, driven through their public
//! API against a gate on loopback, with an
//! observer that sees every decision. What is checked: the order and
//! number of decisions (one per connect, its implicit bind not decided),
//! allowed, denied and refused outcomes (a denial hands the socket back
//! unchanged), refused peers that never reach the guest, pool confinement
//! beyond the policy, each datagram decided, and readiness once a connect
//! has ended. Every allow has its deny twin.

use std::future::poll_fn;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_net::socket::Activation;
use warden_net::socket::Family;
use warden_net::socket::component::{self as tcp, ErrorCode, Sockets, TcpSocket};
use warden_net::socket::posix::{self as opened, Datagram, Opened};
use warden_net::{Action, Gate, Observer, Policy, Pool};
use warden_policy::{Kind, Rights, Rule, parse_target_ports};

/// How long a test waits for something that must not happen.
const QUIET: Duration = Duration::from_millis(300);
/// How long a test waits for something that must happen.
const BOUND: Duration = Duration::from_secs(10);

/// Every decision the gate made, in order.
#[derive(Default)]
struct Seen(Mutex<Vec<(Action, bool)>>);

impl Observer for Seen {
    fn decision(&self, action: Action, allowed: bool) {
        self.0.lock().unwrap().push((action, allowed));
    }
    fn tls(&self, _: Action, _: bool) {}
}

impl Seen {
    /// The decisions since the last call.
    fn take(&self) -> Vec<(Action, bool)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A gate granting `grants` (`TARGET:PORTS` and rights), silent on
/// stderr, observed by the returned `Seen`.
fn observed_gate(grants: &[(&str, Rights)]) -> (Arc<Gate>, Arc<Seen>) {
    let rules = grants.iter().map(|(tp, rights)| {
        let (target, ports) = parse_target_ports(tp).unwrap();
        Rule::allow(*tp, target, ports, *rights)
    });
    let seen = Arc::new(Seen::default());
    let gate = Gate::builder(Policy::new(rules))
        .reporter(Arc::new(|_| {}))
        .observer(seen.clone())
        .build();
    (gate, seen)
}

/// A loopback port where nothing listens (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sockets(gate: &Arc<Gate>) -> Sockets {
    Sockets {
        gate: gate.clone(),
        activation: Arc::new(Activation::default()),
    }
}

async fn finish(socket: &mut TcpSocket) -> Result<(), ErrorCode> {
    tokio::time::timeout(BOUND, poll_fn(|cx| socket.poll_finish_connect(cx)))
        .await
        .expect("a connect on loopback ends")
}

#[tokio::test]
async fn a_component_connect_is_one_decision_allowed_denied_or_refused() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let open: SocketAddr = peer.local_addr().unwrap();
    let refused: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let (gate, seen) = observed_gate(&[
        (&open.to_string(), Rights::CONNECT),
        (&refused.to_string(), Rights::CONNECT),
    ]);
    let ctx = sockets(&gate);

    // Denied: the call's own error, decided once, and the socket is as
    // it was.
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    let denied: SocketAddr = ([127, 0, 0, 1], 9).into();
    assert_eq!(socket.start_connect(denied), Err(ErrorCode::AccessDenied));
    assert!(!socket.is_connecting());
    assert_eq!(seen.take(), [(Action::Connect, false)]);

    // Allowed, on the same socket: one decision, no bind decided.
    socket.start_connect(open).unwrap();
    assert_eq!(finish(&mut socket).await, Ok(()));
    assert_eq!(seen.take(), [(Action::Connect, true)]);
    assert_eq!(socket.remote_address(), Ok(open));
    let (mut accepted, _) = peer.accept().unwrap();
    socket
        .take_writer()
        .unwrap()
        .write_all(b"ping")
        .await
        .unwrap();
    let mut got = [0u8; 4];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    accepted.write_all(b"pong").unwrap();
    let mut back = [0u8; 4];
    socket
        .take_reader()
        .unwrap()
        .read_exact(&mut back)
        .await
        .unwrap();
    assert_eq!(&back, b"pong");

    // Refused by the peer's host: allowed by the gate, refused by the
    // kernel, and said so by finishing (never a success).
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    socket.start_connect(refused).unwrap();
    assert_eq!(finish(&mut socket).await, Err(ErrorCode::ConnectionRefused));
    assert_eq!(seen.take(), [(Action::Connect, true)]);

    // Bad arguments are refused before the gate is asked.
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, open.port()).into();
    assert_eq!(socket.start_connect(v6), Err(ErrorCode::InvalidArgument));
    let port0: SocketAddr = ([127, 0, 0, 1], 0).into();
    assert_eq!(socket.start_connect(port0), Err(ErrorCode::InvalidArgument));
    assert_eq!(seen.take(), []);
}

/// Connect to `addr` from `from` and read one byte: what a peer the
/// listener refuses sees (a reset, never an orderly end it could take for
/// an empty answer, and never a wait).
fn read_as_peer(from: [u8; 4], addr: SocketAddr) -> Result<usize, ErrorKind> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let mut c = TcpStream::from(s);
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.read(&mut [0u8; 1]).map_err(|e| e.kind())
}

/// Accept from `listener` within `wait`, if anything arrives.
async fn accept_within(listener: &mut tcp::Incoming, wait: Duration) -> Option<TcpSocket> {
    tokio::time::timeout(wait, poll_fn(|cx| listener.poll_accept(cx)))
        .await
        .ok()
}

#[tokio::test]
async fn a_component_listener_decides_bind_then_listen_and_each_peer() {
    // Bind and listen granted, accept only from 10/8: a loopback client
    // is refused (reset) and never reaches the guest.
    let (gate, seen) = observed_gate(&[
        ("127.0.0.1:*", Rights::BIND | Rights::LISTEN),
        ("10.0.0.0/8:*", Rights::ACCEPT),
    ]);
    let ctx = sockets(&gate);
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let mut listener = socket.listen().unwrap();
    assert_eq!(seen.take(), [(Action::Bind, true), (Action::Listen, true)]);
    let addr = socket.local_address().unwrap();
    let client = std::thread::spawn(move || read_as_peer([127, 0, 0, 1], addr));
    assert!(accept_within(&mut listener, QUIET).await.is_none());
    // Joined off the runtime's thread, which must stay free to run tasks.
    let let_go = tokio::task::spawn_blocking(move || client.join().unwrap());
    assert_eq!(let_go.await.unwrap(), Err(ErrorKind::ConnectionReset));
    assert_eq!(seen.take(), [(Action::Accept, false)]);

    // The allow twin: accept from loopback.
    let (gate, seen) = observed_gate(&[
        ("127.0.0.1:*", Rights::BIND | Rights::LISTEN),
        ("127.0.0.0/8:*", Rights::ACCEPT),
    ]);
    let ctx = sockets(&gate);
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let mut listener = socket.listen().unwrap();
    let addr = socket.local_address().unwrap();
    let client = TcpStream::connect(addr).unwrap();
    let accepted = accept_within(&mut listener, BOUND).await.expect("accepted");
    assert_eq!(accepted.remote_address(), Ok(client.local_addr().unwrap()));
    assert_eq!(seen.take()[2..], [(Action::Accept, true)]);

    // Listen without a listen grant: denied, and the socket stays bound.
    let (gate, seen) = observed_gate(&[("127.0.0.1:*", Rights::BIND)]);
    let ctx = sockets(&gate);
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    assert!(matches!(socket.listen(), Err(ErrorCode::AccessDenied)));
    assert!(socket.is_bound());
    assert!(!socket.is_listening());
    assert_eq!(seen.take(), [(Action::Bind, true), (Action::Listen, false)]);

    // Bind without a grant: denied before the kernel binds.
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    assert_eq!(
        socket.bind(([127, 0, 0, 2], 0).into()),
        Err(ErrorCode::AccessDenied)
    );
    assert!(!socket.is_bound());
}

#[tokio::test]
async fn a_bind_of_a_pre_opened_address_takes_the_operators_listener() {
    let (gate, seen) = observed_gate(&[
        ("127.0.0.1:*", Rights::BIND | Rights::LISTEN),
        ("127.0.0.0/8:*", Rights::ACCEPT),
    ]);
    let pre = TcpListener::bind("127.0.0.1:0").unwrap();
    let activation = Arc::new(Activation::default());
    let addr = activation.add(pre).unwrap();
    let ctx = Sockets {
        gate: gate.clone(),
        activation: activation.clone(),
    };
    // A client that arrives before the guest listens waits in the
    // operator's backlog.
    let early = TcpStream::connect(addr).unwrap();
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    socket.bind(addr).unwrap();
    assert!(activation.waiting().is_empty(), "taken by the bind");
    let mut listener = socket.listen().unwrap();
    let accepted = accept_within(&mut listener, BOUND).await.expect("accepted");
    assert_eq!(accepted.remote_address(), Ok(early.local_addr().unwrap()));
    assert_eq!(
        seen.take(),
        [
            (Action::Bind, true),
            (Action::Listen, true),
            (Action::Accept, true)
        ]
    );
}

#[tokio::test]
async fn a_denied_bind_of_a_pre_opened_address_leaves_the_listener_waiting() {
    // Listen and accept granted, bind not: the bind is what decides.
    let (gate, seen) = observed_gate(&[("127.0.0.1:*", Rights::LISTEN | Rights::ACCEPT)]);
    let activation = Arc::new(Activation::default());
    let addr = activation
        .add(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let ctx = Sockets {
        gate,
        activation: activation.clone(),
    };
    let mut socket = TcpSocket::new(&ctx, Family::V4).unwrap();
    assert_eq!(socket.bind(addr), Err(ErrorCode::AccessDenied));
    assert_eq!(activation.waiting(), [addr], "still the operator's");
    assert!(!socket.is_bound());
    assert_eq!(seen.take(), [(Action::Bind, false)]);
}

/// Wait for a preview1 connect to end; its outcome.
async fn outcome(c: &opened::Connecting) -> std::io::Result<warden_net::socket::Stream> {
    tokio::time::timeout(BOUND, poll_fn(|cx| c.poll_done(cx)))
        .await
        .expect("a connect on loopback ends");
    c.take().expect("done means an outcome")
}

#[tokio::test]
async fn a_preview1_connect_is_one_decision_allowed_denied_or_refused() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = peer.local_addr().unwrap();
    let refused: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let (gate, seen) = observed_gate(&[
        (&open.to_string(), Rights::CONNECT),
        (&refused.to_string(), Rights::CONNECT),
    ]);

    // Denied: EACCES, and the socket comes back to be used again.
    let socket = Opened::new(Family::V4, None).unwrap();
    let (socket, e) = socket
        .connect(&gate, ([127, 0, 0, 1], 9).into())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(seen.take(), [(Action::Connect, false)]);

    // Allowed: one decision; writable once connected.
    let connecting = socket.connect(&gate, open).map_err(|(_, e)| e).unwrap();
    assert!(!connecting.host_driven(), "a plain connect is the kernel's");
    let stream = outcome(&connecting).await.unwrap();
    assert_eq!(stream.peer_addr(), open);
    assert_eq!(seen.take(), [(Action::Connect, true)]);
    let (mut accepted, _) = peer.accept().unwrap();
    stream
        .wait(warden_net::socket::Interest::Write)
        .await
        .unwrap();
    assert_eq!(stream.try_send(b"ping").unwrap(), 4);
    let mut got = [0u8; 4];
    accepted.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");

    // Refused: allowed, then ECONNREFUSED, and the connect reads as hung
    // up (poll(2) tells a failed connect as POLLHUP).
    let socket = Opened::new(Family::V4, None).unwrap();
    let connecting = socket.connect(&gate, refused).map_err(|(_, e)| e).unwrap();
    let e = outcome(&connecting).await.map(|_| ()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    assert_eq!(seen.take(), [(Action::Connect, true)]);
}

#[tokio::test]
async fn a_preview1_connect_ends_readable_by_poll() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = peer.local_addr().unwrap();
    let refused: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    let (gate, _) = observed_gate(&[("127.0.0.1:*", Rights::CONNECT)]);
    for (to, failed) in [(open, false), (refused, true)] {
        let socket = Opened::new(Family::V4, None).unwrap();
        let connecting = socket.connect(&gate, to).map_err(|(_, e)| e).unwrap();
        tokio::time::timeout(BOUND, poll_fn(|cx| connecting.poll_done(cx)))
            .await
            .unwrap();
        let r = connecting.readiness();
        assert!(r.writable, "{to}: done is writable");
        assert_eq!(r.hangup, failed, "{to}: a failed connect is hung up");
    }
}

#[tokio::test]
async fn a_kind_at_its_cap_refuses_a_connect_on_both_faces_after_one_decision() {
    // One connection at a time through the kind `one`: a second connect is
    // allowed by the policy (one decision each) and refused by the kind.
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = peer.local_addr().unwrap();
    let (target, ports) = parse_target_ports("127.0.0.1:*").unwrap();
    let rule = Rule::allow("capped", target, ports, Rights::CONNECT).with_kind("one");
    let kind = Kind {
        name: "one".into(),
        max_connections: Some(1),
        ..Kind::default()
    };
    let seen = Arc::new(Seen::default());
    let gate = Gate::builder(Policy::with_kinds([rule], [kind], false).unwrap())
        .reporter(Arc::new(|_| {}))
        .observer(seen.clone())
        .build();
    let ctx = sockets(&gate);
    let mut first = TcpSocket::new(&ctx, Family::V4).unwrap();
    first.start_connect(to).unwrap();
    let made = tokio::time::timeout(BOUND, poll_fn(|cx| first.poll_finish_connect(cx))).await;
    assert_eq!(made.unwrap(), Ok(()));
    assert_eq!(seen.take(), [(Action::Connect, true)]);

    // The component face: start-connect is allowed; the refusal is the
    // first finish-connect's answer.
    let mut second = TcpSocket::new(&ctx, Family::V4).unwrap();
    assert_eq!(second.start_connect(to), Ok(()));
    let refused = poll_fn(|cx| second.poll_finish_connect(cx)).await;
    assert_eq!(refused, Err(ErrorCode::ConnectionRefused));
    // The preview1 face: refused at once, the socket handed back.
    let socket = Opened::new(Family::V4, None).unwrap();
    let (socket, e) = socket.connect(&gate, to).map(|_| ()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    assert_eq!(
        seen.take(),
        [(Action::Connect, true), (Action::Connect, true)]
    );

    // The twin: with the first connection gone, the kind has room again.
    drop(first);
    let connecting = socket.connect(&gate, to).map_err(|(_, e)| e).unwrap();
    outcome(&connecting).await.unwrap();
    assert_eq!(seen.take(), [(Action::Connect, true)]);
}

#[tokio::test]
async fn a_pool_confines_a_socket_beyond_what_the_policy_allows() {
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = peer.local_addr().unwrap();
    let other: SocketAddr = ([127, 0, 0, 1], closed_port()).into();
    // The policy allows any loopback connect; the pool only `open`.
    let (gate, seen) = observed_gate(&[("127.0.0.0/8:*", Rights::CONNECT)]);
    let pool = Arc::new(Pool::parse(&format!("db=connect@{open}")).unwrap());

    let socket = Opened::new(Family::V4, Some(pool.clone())).unwrap();
    let (socket, e) = socket.connect(&gate, other).map(|_| ()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(seen.take(), [(Action::Connect, false)]);
    let connecting = socket.connect(&gate, open).map_err(|(_, e)| e).unwrap();
    outcome(&connecting).await.unwrap();
    assert_eq!(seen.take(), [(Action::Connect, true)]);

    // The twin without the pool: the same connect is the policy's to
    // allow (and the kernel's to refuse).
    let socket = Opened::new(Family::V4, None).unwrap();
    let connecting = socket.connect(&gate, other).map_err(|(_, e)| e).unwrap();
    let e = outcome(&connecting).await.map(|_| ()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    assert_eq!(seen.take(), [(Action::Connect, true)]);
}

#[tokio::test]
async fn a_preview1_listener_decides_each_peer_once_within_its_pool() {
    // The policy allows all of loopback; the pool only 127.0.0.1, so a
    // peer from 127.0.0.2 is the pool's to refuse: one decision, a reset.
    let (gate, seen) = observed_gate(&[(
        "127.0.0.0/8:*",
        Rights::BIND | Rights::LISTEN | Rights::ACCEPT,
    )]);
    let pool = Arc::new(Pool::parse("web=bind+listen+accept@127.0.0.1:*").unwrap());
    let socket = Opened::new(Family::V4, Some(pool)).unwrap();
    socket.bind(&gate, ([127, 0, 0, 1], 0).into()).unwrap();
    let listener = socket.listen(&gate, 16).map_err(|(_, e)| e).unwrap();
    assert_eq!(seen.take(), [(Action::Bind, true), (Action::Listen, true)]);
    let addr = listener.local_addr().unwrap();

    let stranger = std::thread::spawn(move || read_as_peer([127, 0, 0, 2], addr));
    tokio::time::timeout(BOUND, listener.wait(warden_net::socket::Interest::Read))
        .await
        .unwrap()
        .unwrap();
    let e = listener.try_accept(&gate).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::WouldBlock,
        "the refused peer is not handed over"
    );
    let let_go = tokio::task::spawn_blocking(move || stranger.join().unwrap());
    assert_eq!(let_go.await.unwrap(), Err(ErrorKind::ConnectionReset));
    assert_eq!(seen.take(), [(Action::Accept, false)]);

    // The allow twin: a peer from 127.0.0.1 is inside both.
    let client = TcpStream::connect(addr).unwrap();
    let accepted = tokio::time::timeout(BOUND, async {
        loop {
            listener
                .wait(warden_net::socket::Interest::Read)
                .await
                .unwrap();
            match listener.try_accept(&gate) {
                Ok(stream) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(accepted.peer_addr(), client.local_addr().unwrap());
    assert_eq!(seen.take(), [(Action::Accept, true)]);
}

#[tokio::test]
async fn each_preview1_datagram_is_decided_both_ways() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = peer.local_addr().unwrap();
    let (gate, seen) = observed_gate(&[(&to.to_string(), Rights::UDP_SEND | Rights::UDP_RECV)]);
    let socket = Datagram::new(&gate, Family::V4, None).unwrap();

    // Sending elsewhere is denied.
    let e = socket
        .try_send_to(&gate, b"no", Some(stranger.local_addr().unwrap()))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(seen.take(), [(Action::UdpSend, false)]);

    // Sending to the peer: decided, and the implicit bind with it.
    assert_eq!(socket.try_send_to(&gate, b"hello", Some(to)).unwrap(), 5);
    let decided = seen.take();
    assert_eq!(decided[0], (Action::UdpSend, true));
    assert!(decided[1..].iter().all(|d| *d == (Action::UdpBind, true)));
    let mut buf = [0u8; 16];
    peer.set_read_timeout(Some(BOUND)).unwrap();
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");

    // A stranger's datagram is dropped unseen; the peer's comes through.
    stranger.send_to(b"spoof", from).unwrap();
    peer.send_to(b"reply", from).unwrap();
    let got = tokio::time::timeout(BOUND, async {
        loop {
            socket
                .wait(warden_net::socket::Interest::Read)
                .await
                .unwrap();
            match socket.try_recv_from(&gate, &mut buf, false) {
                Ok(got) => break got,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((&buf[..got.0], got.1), (&b"reply"[..], to));
    let decided = seen.take();
    assert!(decided.contains(&(Action::UdpRecv, false)), "{decided:?}");
    assert_eq!(decided.last(), Some(&(Action::UdpRecv, true)));
}
