//! A wasi:http proxy (WASI 0.2) that counts its requests in the built-in
//! `wasi:keyvalue`: every request is answered 200 with the count after
//! it, so instances that share a store count together.
wit_bindgen::generate!({ world: "keyvalue-service", generate_all });

use ::wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Counter;
::wasi::http::proxy::export!(Counter);

impl ::wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let bucket = crate::wasi::keyvalue::store::open("").expect("open");
        let n = crate::wasi::keyvalue::atomics::increment(&bucket, "hits", 1).expect("increment");
        let body = format!("{n}\n");
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
