//! A bridge plug: exports `warden:test-programs/greeter` over wasi:http
//! egress: `greet(NAME)` is the body of GET $GREETER_URL?name=NAME (the
//! environment is the instance's), or `error: ...` when the request fails
//! (a denial included).
wit_bindgen::generate!({ world: "greeter-http", generate_all });

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};

struct Bridge;
export!(Bridge);

fn get(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("GREETER_URL must be http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&Method::Get).unwrap();
    req.set_scheme(Some(&Scheme::Http)).unwrap();
    req.set_authority(Some(authority)).unwrap();
    req.set_path_with_query(Some(path)).unwrap();
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    let resp = fut
        .get()
        .ok_or("not ready")?
        .map_err(|()| "taken")?
        .map_err(|e| format!("{e:?}"))?;
    let body = resp.consume().map_err(|()| "body taken")?;
    let mut stream = body.stream().map_err(|()| "stream taken")?;
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl exports::warden::test_programs::greeter::Guest for Bridge {
    fn greet(name: String) -> String {
        let url = std::env::var("GREETER_URL").unwrap_or_default();
        match get(&format!("{url}?name={name}")) {
            Ok(body) => body,
            Err(e) => format!("error: {e}"),
        }
    }
}

fn main() {}
