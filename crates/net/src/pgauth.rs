//! PostgreSQL's SASL offer as the guest sees it through a `postgres-tls`
//! kind: without `SCRAM-SHA-256-PLUS`.
//!
//! A PostgreSQL server on TLS offers SCRAM with channel binding
//! (`SCRAM-SHA-256-PLUS`) beside plain `SCRAM-SHA-256`. The guest's client
//! speaks plaintext to Warden, which does the TLS: the client cannot bind
//! a channel it does not see, and libpq refuses a `-PLUS` offer on what it
//! sees as a plaintext connection, so a SCRAM role (PostgreSQL's default
//! since 14) could not log in. The server's offer is therefore rewritten
//! on its way to the guest: `SCRAM-SHA-256-PLUS` is dropped, and the
//! client uses plain SCRAM, whose exchange still travels inside Warden's
//! TLS (the server's certificate checked against the kind's name). What
//! is given up is channel binding itself: the SCRAM exchange is not tied
//! to this TLS session, so it guards against a server that does not know
//! the password, not against a man in the middle of Warden's TLS, which
//! the certificate check guards against. A client configured with
//! `channel_binding=require` refuses the connection, as it should.
//!
//! Only the authentication exchange is looked at: messages are read
//! whole (at most [`MAX_AUTH_MESSAGE`] bytes each) until the server says
//! `AuthenticationOk` or an error; everything after, and anything that
//! does not look like that exchange, passes untouched.

/// The largest message read whole during authentication; a larger one
/// ends the filtering (it cannot be an authentication request) and passes
/// as it is.
pub const MAX_AUTH_MESSAGE: usize = 8 * 1024;

/// The SASL mechanism dropped from the server's offer.
const PLUS: &[u8] = b"SCRAM-SHA-256-PLUS";

/// The rewriting of one connection's server-to-client bytes.
#[derive(Debug, Default)]
pub(crate) struct SaslOffer {
    /// Bytes read and not yet whole messages.
    pending: Vec<u8>,
    /// Bytes ready for the guest.
    out: Vec<u8>,
    /// Authentication is over: everything passes as it is.
    done: bool,
}

impl SaslOffer {
    /// Take in bytes from the server.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.done {
            self.out.extend_from_slice(bytes);
            return;
        }
        self.pending.extend_from_slice(bytes);
        while !self.done && self.pending.len() >= 5 {
            let ty = self.pending[0];
            let len = u32::from_be_bytes([
                self.pending[1],
                self.pending[2],
                self.pending[3],
                self.pending[4],
            ]) as usize;
            if !(4..=MAX_AUTH_MESSAGE).contains(&len) {
                // Not the authentication exchange as we know it.
                self.finish();
                return;
            }
            if self.pending.len() < 1 + len {
                return;
            }
            let message: Vec<u8> = self.pending.drain(..1 + len).collect();
            match (ty, auth_code(&message)) {
                // AuthenticationSASL: rewrite the offer.
                (b'R', Some(10)) => self.out.extend_from_slice(&without_plus(&message)),
                // AuthenticationOk, or an error: authentication is over.
                (b'R', Some(0)) | (b'E', _) => {
                    self.out.extend_from_slice(&message);
                    self.finish();
                }
                _ => self.out.extend_from_slice(&message),
            }
        }
    }

    /// The stream ended: what is pending goes as it is.
    pub(crate) fn finish(&mut self) {
        self.done = true;
        self.out.append(&mut self.pending);
    }

    /// Bytes ready for the guest (taken).
    pub(crate) fn take(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.out.len());
        self.out.drain(..n).collect()
    }

    /// Whether bytes are ready for the guest.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether authentication is over and every byte handed out, so the
    /// filter has nothing more to do.
    pub(crate) fn spent(&self) -> bool {
        self.done && self.out.is_empty()
    }
}

/// An Authentication message's code (the int32 after the length).
fn auth_code(message: &[u8]) -> Option<u32> {
    let b = message.get(5..9)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An AuthenticationSASL message without `SCRAM-SHA-256-PLUS` in its list
/// of mechanisms (NUL-terminated names, then an empty one). A message that
/// is not shaped so is left as it is.
fn without_plus(message: &[u8]) -> Vec<u8> {
    let list = &message[9..];
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut rest = list;
    loop {
        let Some(end) = rest.iter().position(|&b| b == 0) else {
            return message.to_vec();
        };
        let name = &rest[..end];
        rest = &rest[end + 1..];
        if name.is_empty() {
            break;
        }
        if name != PLUS {
            kept.push(name);
        }
    }
    if kept.is_empty() || !rest.is_empty() {
        // Nothing left to offer (only -PLUS), or trailing bytes: leave
        // the server's message alone.
        return message.to_vec();
    }
    let mut body = 10u32.to_be_bytes().to_vec();
    for name in kept {
        body.extend_from_slice(name);
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'R'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![ty];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn sasl(mechanisms: &[&str]) -> Vec<u8> {
        let mut body = 10u32.to_be_bytes().to_vec();
        for m in mechanisms {
            body.extend_from_slice(m.as_bytes());
            body.push(0);
        }
        body.push(0);
        message(b'R', &body)
    }

    /// Everything `feed` gives out for `input` fed in pieces of `step`.
    fn filtered(input: &[u8], step: usize) -> Vec<u8> {
        let mut f = SaslOffer::default();
        let mut out = Vec::new();
        for chunk in input.chunks(step) {
            f.feed(chunk);
            out.extend(f.take(usize::MAX));
        }
        f.finish();
        out.extend(f.take(usize::MAX));
        out
    }

    #[test]
    fn the_plus_mechanism_is_dropped_and_the_rest_passes() {
        let ok = message(b'R', &0u32.to_be_bytes());
        let after = message(b'Z', b"I");
        let mut input = sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        input.extend(message(b'R', b"\x00\x00\x00\x0bserver-first"));
        input.extend(&ok);
        // After AuthenticationOk nothing is touched, even what looks like
        // an offer.
        input.extend(sasl(&["SCRAM-SHA-256-PLUS"]));
        input.extend(&after);
        let mut want = sasl(&["SCRAM-SHA-256"]);
        want.extend(message(b'R', b"\x00\x00\x00\x0bserver-first"));
        want.extend(&ok);
        want.extend(sasl(&["SCRAM-SHA-256-PLUS"]));
        want.extend(&after);
        for step in [1, 3, 7, 64, 4096] {
            assert_eq!(filtered(&input, step), want, "in pieces of {step}");
        }
    }

    #[test]
    fn anything_else_passes_as_it_is() {
        // An offer without -PLUS, only -PLUS, or malformed.
        for m in [
            sasl(&["SCRAM-SHA-256"]),
            sasl(&["SCRAM-SHA-256-PLUS"]),
            message(b'R', b"\x00\x00\x00\x0aSCRAM-SHA-256-PLUS"),
            message(b'E', b"SFATAL\x00"),
            // Not PostgreSQL at all: a length no message has.
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            vec![b'R', 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        ] {
            assert_eq!(filtered(&m, 2), m);
        }
        // A truncated stream passes its pending bytes at the end.
        let offer = sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        let cut = &offer[..offer.len() - 3];
        assert_eq!(filtered(cut, 5), cut);
    }
}
