//! wasi:http outgoing requests, whose only way out is the gate.
//!
//! wasi-http's default client (which would connect wherever the guest
//! says) is not compiled in. Here a request is decided on its host name
//! and port (`http-request`, needing the `connect` right), the name is
//! resolved once on the host, each address is decided (`connect`, allowed
//! through the name's pin) and only allowed addresses are dialled. The
//! guest sees `HTTP-request-denied` for a refused request. An `https://`
//! request (or any request on a grant of a TLS kind) is sent over TLS the
//! host does: the kind's CAs and client certificate, or the webpki roots,
//! with the request's host as the name checked.

use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use warden_net::trace::{Child, Trace};
use warden_net::{Action, ConnectError, Gate, LookupError, Refusal, Target};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long to wait for a connection when the guest does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The hooks: every request goes through `gate`.
pub(crate) struct GatedHttp {
    pub(crate) gate: Arc<Gate>,
}

impl GatedHttp {
    pub(crate) fn new(gate: Arc<Gate>) -> Self {
        GatedHttp { gate }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<(), Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for GatedHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let gate = self.gate.clone();
        Box::new(async move {
            let span = gate.trace().map(|t| client_span(t, &request));
            let sent = send(&gate, request, options, span.as_ref().map(Child::trace)).await;
            if let Some(span) = &span {
                traced_outcome(span, &sent);
            }
            let (response, io) = sent?;
            Ok((
                response,
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

/// An outgoing request as a client span (OpenTelemetry's HTTP client
/// conventions: named by its method; the URL without its query, which may
/// carry secrets).
fn client_span(trace: &Trace, request: &http::Request<WasiBody>) -> Child {
    let uri = request.uri();
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = uri.host().unwrap_or_default();
    let url = format!(
        "{}://{}{}",
        if https { "https" } else { "http" },
        uri.authority().map_or(host, |a| a.as_str()),
        uri.path()
    );
    trace.child(
        request.method().as_str().to_string(),
        SpanKind::Client,
        vec![
            KeyValue::new("http.request.method", request.method().as_str().to_string()),
            KeyValue::new("server.address", warden_net::shorten(host).into_owned()),
            KeyValue::new("server.port", i64::from(port)),
            KeyValue::new("url.full", warden_net::shorten(&url).into_owned()),
        ],
    )
}

/// The outcome on the client span: the status (an error from 400 on, as
/// the conventions say for clients), or the error.
fn traced_outcome<T>(span: &Child, sent: &Result<(http::Response<WasiBody>, T), Error>) {
    match sent {
        Ok((response, _)) => {
            let status = response.status().as_u16();
            span.set(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 400 {
                span.fail(&status.to_string(), format!("the server answered {status}"));
            }
        }
        Err(Error::HttpRequestDenied) => span.fail("denied", "the policy denied the request"),
        Err(e) => span.fail(&format!("{e:?}"), e.to_string()),
    }
}

async fn send(
    gate: &Arc<Gate>,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    trace: Option<&Trace>,
) -> Result<
    (
        http::Response<WasiBody>,
        impl Future<Output = Result<(), Error>> + Send + use<>,
    ),
    Error,
> {
    let uri = request.uri().clone();
    let Target::Name {
        host,
        port: Some(port),
    } = http_target(&uri)
    else {
        return Err(Error::HttpRequestUriInvalid);
    };
    if host.is_empty() {
        return Err(Error::HttpRequestUriInvalid);
    }
    // Credentials in the authority (`user:pass@host`) would travel in the
    // Host header and could make a lax virtual-host router pick another
    // site than the one decided: refused.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        gate.refuse_userinfo(uri.authority().map_or("", |a| a.as_str()));
        return Err(Error::HttpRequestDenied);
    }
    // One place among the instance's requests in flight, held until the
    // connection is done.
    let slot = gate.http_slot().await;
    let timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(CONNECT_TIMEOUT);
    let stream = gate
        .connect(
            Action::HttpRequest,
            &host,
            port,
            timeout,
            uri.scheme() == Some(&Scheme::HTTPS),
            trace,
        )
        .await
        .map_err(|e| match e {
            ConnectError::Denied(_) => Error::HttpRequestDenied,
            ConnectError::InvalidName(_) => Error::HttpRequestUriInvalid,
            ConnectError::Lookup(LookupError::NotFound(_)) => Error::DnsError {
                rcode: Some("NXDOMAIN".into()),
                info_code: None,
            },
            ConnectError::Lookup(_) => Error::DnsError {
                rcode: None,
                info_code: None,
            },
            ConnectError::Timeout => Error::ConnectionTimeout,
            ConnectError::Refused(Refusal::Cap { .. } | Refusal::Quota { .. }) => {
                Error::ConnectionLimitReached
            }
            ConnectError::Refused(Refusal::Tls {
                certificate: true, ..
            }) => Error::TlsCertificateError,
            ConnectError::Refused(_) => Error::TlsProtocolError,
            _ => Error::ConnectionRefused,
        })?;
    // Under bandwidth limits the request and response (headers and
    // bodies) count as what the guest sends and receives.
    let rates = gate.rates();
    let stream = warden_net::Paced::new(stream, rates.ingress.clone(), rates.egress.clone());
    let (mut sender, conn) = tokio::time::timeout(
        timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // Origin form on the wire; Host is exactly the host[:port] decided,
    // whatever the request carried.
    let host_header = match uri.port_u16() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let host_header =
        http::HeaderValue::from_str(&host_header).map_err(|_| Error::HttpRequestUriInvalid)?;
    request
        .headers_mut()
        .insert(http::header::HOST, host_header);
    // The trace goes on with the request, unless the guest carries its own.
    if let Some(t) = trace {
        warden_net::trace::inject(&t.context(), request.headers_mut());
    }
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(uri.path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let conn = tokio::spawn(conn);
    let first_byte = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(Duration::from_secs(600));
    let response = tokio::time::timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    Ok((response, async move {
        let done = match conn.await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::ConnectionTerminated),
        };
        drop(slot);
        done
    }))
}

/// The host and port an outgoing request is aimed at, as the gate sees it.
pub(crate) fn http_target(uri: &http::Uri) -> Target {
    let https = uri.scheme() == Some(&Scheme::HTTPS);
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Target::Name {
        host: uri.host().unwrap_or_default().to_string(),
        port: Some(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_target_uses_scheme_default_ports() {
        let t = |u: &str| http_target(&u.parse().unwrap()).to_string();
        assert_eq!(t("http://example.com/x"), "example.com:80");
        assert_eq!(t("https://example.com/"), "example.com:443");
        assert_eq!(t("http://127.0.0.1:8080/"), "127.0.0.1:8080");
        assert_eq!(t("http://[::1]:81/"), "[::1]:81");
    }
}
