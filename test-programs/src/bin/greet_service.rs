//! A wasi:http proxy (WASI 0.2) that imports
//! `warden:test-programs/greeter`: every request is answered 200 with
//! `greet(the path's last segment)`.
wit_bindgen::generate!({ world: "greet-service", generate_all });

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Service;
wasi::http::proxy::export!(Service);

impl wasi::exports::http::incoming_handler::Guest for Service {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let body = format!("{}\n", warden::test_programs::greeter::greet(&name));
        let resp = OutgoingResponse::new(Fields::new());
        let outgoing = resp.body().unwrap();
        ResponseOutparam::set(out, Ok(resp));
        let stream = outgoing.write().unwrap();
        stream.blocking_write_and_flush(body.as_bytes()).unwrap();
        drop(stream);
        OutgoingBody::finish(outgoing, None).unwrap();
    }
}

fn main() {}
