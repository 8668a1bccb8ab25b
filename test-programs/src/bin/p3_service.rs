//! A WASI 0.3 wasi:http service (exporting wasi:http/handler@0.3.0) for
//! `warden serve`'s tests:
//!
//!   /count    how many requests this instance has handled
//!   /info     scheme, authority and x-request-id, one per line
//!   /spin     computes forever
//!   /stream   a body that never ends
//!   /traphead 1000 bytes of body, then a trap
//!   otherwise `hello from a 0.3 service`
wit_bindgen::generate!({
    world: "p3-service",
    features: ["clocks-timezone"],
    generate_all
});

use std::sync::atomic::{AtomicU32, Ordering};

use crate::wasi::http::types::{ErrorCode, Fields, Request, Response, Scheme};

struct Service;

export!(Service);

static HANDLED: AtomicU32 = AtomicU32::new(0);

impl exports::wasi::http::handler::Guest for Service {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let n = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        let text = match path.as_str() {
            "/count" => format!("{n}\n"),
            "/info" => {
                let scheme = match request.get_scheme() {
                    Some(Scheme::Http) => "http".to_string(),
                    Some(Scheme::Https) => "https".to_string(),
                    Some(Scheme::Other(o)) => o,
                    None => "none".to_string(),
                };
                let id = request
                    .get_headers()
                    .get("x-request-id")
                    .first()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                format!(
                    "scheme {scheme}\nauthority {}\nrequest-id {id}\n",
                    request.get_authority().unwrap_or_default()
                )
            }
            "/spin" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "/stream" | "/traphead" => {
                let trap = path == "/traphead";
                let (mut body, contents) = wit_stream::new();
                let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
                let (response, _sent) = Response::new(Fields::new(), Some(contents), trailers);
                wit_bindgen::spawn_local(async move {
                    if trap {
                        let _ = body.write_all(vec![b'x'; 1000]).await;
                        panic!("the service panicked after its response began");
                    }
                    loop {
                        let rest = body.write_all(vec![b'x'; 65536]).await;
                        if !rest.is_empty() {
                            break;
                        }
                    }
                    drop(trailers_tx);
                });
                return Ok(response);
            }
            _ => "hello from a 0.3 service\n".to_string(),
        };
        let (mut body, contents) = wit_stream::new();
        let (trailers_tx, trailers) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let (response, _sent) = Response::new(Fields::new(), Some(contents), trailers);
        wit_bindgen::spawn_local(async move {
            let _ = body.write_all(text.into_bytes()).await;
        });
        Ok(response)
    }
}

fn main() {
    unreachable!("a service has no main");
}
