//! The wstd hello: `/hello` answers the same bytes as the project's own
//! hello (test-programs/src/bin/http_proxy.rs), through wstd's runtime
//! and its `http_server` export; anything else is a 404.

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if request.uri().path() == "/hello" {
        return Ok(Response::new("hello from a proxy\n".to_owned().into()));
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_FOUND;
    Ok(response)
}
