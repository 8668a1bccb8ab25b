//! The ceiling for bench/serve.py: a native hyper server answering every
//! request with `hello from a proxy\n`, as the benchmark's component does,
//! on 127.0.0.1 (HTTP/1.1 and HTTP/2). It prints `serving http://ADDR/`
//! and stops when stdin closes (or after an hour).
//!
//! With `collector`, it is an OTLP/HTTP sink for the tracing rows
//! instead: every request's body is read and answered 200 with an empty
//! protobuf body (an export accepted in full).
//!
//! Usage: hello_server [collector]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() {
    let collector = std::env::args().nth(1).as_deref() == Some("collector");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("serving http://{}/", listener.local_addr().unwrap());
    let serve = async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| async move {
                    let resp = if collector {
                        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                        http::Response::builder()
                            .header("content-type", "application/x-protobuf")
                            .body(Full::new(Bytes::new()))
                    } else {
                        http::Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(Bytes::from_static(b"hello from a proxy\n")))
                    };
                    Ok::<_, Infallible>(resp.unwrap())
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    };
    let stdin = tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 64];
        while std::io::Read::read(&mut std::io::stdin(), &mut buf).is_ok_and(|n| n > 0) {}
    });
    tokio::select! {
        () = serve => {}
        _ = stdin => {}
        () = tokio::time::sleep(Duration::from_secs(3600)) => {}
    }
}
