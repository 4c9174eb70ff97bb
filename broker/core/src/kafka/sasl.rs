//! SASL for Kafka clients (KIP-152): SaslHandshake names a mechanism, SaslAuthenticate
//! carries its tokens. PLAIN checks the user name and password like an MQTT CONNECT; SCRAM-SHA-256
//! and SCRAM-SHA-512 run [`ScramServer`] against the user's stored keys.
//!
//! Until a client that started SASL has finished it, only ApiVersions, SaslHandshake and
//! SaslAuthenticate are answered; any other request closes the connection. A client that
//! never starts SASL is anonymous, let in only when anonymous clients are
//! ([`KafkaSession::may_call`]). A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED and the connection closes, as Kafka does, both after
//! `refused_auth_delay_ms` (nothing more is read meanwhile); so do a second
//! handshake after success (no re-authentication) and a SaslAuthenticate before a handshake
//! (ILLEGAL_SASL_STATE).

use weir_kafka::error::ErrorCode;
use weir_kafka::header::HeaderStart;
use weir_kafka::{api_versions, sasl};

use super::apis::{KafkaError, Request, request_body};
use super::session::{KafkaSession, Mechanism, Refusal, Sasl};
use crate::auth::scram::{ScramMechanism, ScramServer};
use crate::auth::{CertificateIdentity, Verdict};

/// The mechanisms offered, in the order the handshake lists them.
pub const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// What a failed authentication tells the client (never which part was wrong).
const FAILED: &str = "Authentication failed: invalid user name or password";

impl KafkaSession {
    /// The user the connection authenticated as with SASL, if it did.
    pub fn user(&self) -> Option<&str> {
        match &self.sasl {
            Sasl::Done(user) => Some(user),
            _ => None,
        }
    }

    /// The TLS handshake is done and `tls.identity_as_username` is on: a certificate that
    /// names a user authenticates the connection as that user (as Kafka's SSL principal; a
    /// SASL handshake after it is refused, as any second authentication is); without one the
    /// client must authenticate with SASL, anonymous access or not.
    pub fn set_certificate_identity(&mut self, identity: CertificateIdentity) {
        match identity {
            CertificateIdentity::User(user) if matches!(self.sasl, Sasl::None) => {
                self.sasl = Sasl::Done(user);
            }
            CertificateIdentity::User(_) => {}
            CertificateIdentity::Refused(why) => {
                tracing::debug!(client = %self.client_host, "no user from the TLS certificate: {why}");
                self.anonymous_allowed = false;
            }
        }
    }

    /// Whether a request of API `api_key` may be answered now.
    pub(super) fn may_call(&self, api_key: i16) -> bool {
        if [
            api_versions::API_KEY,
            sasl::HANDSHAKE_KEY,
            sasl::AUTHENTICATE_KEY,
        ]
        .contains(&api_key)
        {
            return true;
        }
        match self.sasl {
            Sasl::Done(_) => true,
            Sasl::None => self.anonymous_allowed,
            Sasl::Started(_) | Sasl::Scram(_) => false,
        }
    }

    /// SaslHandshake: the mechanism, if offered, is the connection's.
    pub(super) fn sasl_handshake(
        &mut self,
        frame: &[u8],
        start: HeaderStart,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let body = request_body(frame, start, sasl::handshake_header_version)?;
        let name = sasl::parse_handshake(body, start.api_version)?;
        let mechanism = match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        };
        let (code, refusal) = match (&self.sasl, mechanism) {
            (Sasl::None, Some(mechanism)) => {
                self.sasl = Sasl::Started(mechanism);
                self.sasl_raw = start.api_version == 0;
                (0, None)
            }
            (Sasl::None, None) => (
                ErrorCode::UnsupportedSaslMechanism.code(),
                Some(KafkaError::Sasl(format!(
                    "mechanism {name:?} is not offered"
                ))),
            ),
            _ => (
                ErrorCode::IllegalSaslState.code(),
                Some(KafkaError::Sasl("a second SASL handshake".to_owned())),
            ),
        };
        let correlation_id = start.correlation_id;
        self.answer_now(out, |body| {
            sasl::write_handshake_response(body, correlation_id, code, &MECHANISMS)
        });
        refusal.map_or(Ok(()), Err)
    }

    /// SaslAuthenticate: one token of the exchange the handshake started.
    pub(super) fn sasl_authenticate(
        &mut self,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let start = request.start;
        let body = request_body(request.frame, start, sasl::authenticate_header_version)?;
        let token = sasl::parse_authenticate(body, start.api_version)?;
        let step = self.step(token);
        let (code, message, reply) = match &step {
            Ok(reply) => (0, None, &reply[..]),
            Err((code, why)) => {
                let message = if *code == ErrorCode::SaslAuthenticationFailed.code() {
                    FAILED
                } else {
                    why.as_str()
                };
                (*code, Some(message), &[][..])
            }
        };
        let answer = sasl::Authenticated {
            error_code: code,
            error_message: message,
            token: reply,
            session_lifetime_ms: 0,
        };
        let mut answer_body = Vec::new();
        sasl::write_authenticate_response(
            &mut answer_body,
            start.correlation_id,
            start.api_version,
            &answer,
        );
        match step {
            Ok(_) => {
                self.answer_now(out, |body| body.extend_from_slice(&answer_body));
                Ok(())
            }
            Err((code, why)) if code == ErrorCode::SaslAuthenticationFailed.code() => {
                self.refuse(Some(answer_body), why, request.now_ms, out)
            }
            Err((_, why)) => {
                self.answer_now(out, |body| body.extend_from_slice(&answer_body));
                Err(KafkaError::Sasl(why))
            }
        }
    }

    /// A failed authentication: its answer (if any) and the close after it wait
    /// `refused_auth_delay_ms`, so each guess costs the client that long and the broker only
    /// the open connection; with no delay, both happen now.
    fn refuse(
        &mut self,
        answer: Option<Vec<u8>>,
        why: String,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        let delay = self.settings.refused_auth_delay_ms;
        if delay > 0 {
            let at_ms = now_ms.saturating_add(delay);
            self.refusal = Some(Refusal { at_ms, answer, why });
            return Ok(());
        }
        if let Some(answer) = answer {
            self.answer_now(out, |body| body.extend_from_slice(&answer));
        }
        Err(KafkaError::Sasl(why))
    }

    /// Sends a held refusal once its time has come: the connection must then close (the
    /// error says why).
    pub(super) fn release_refusal(
        &mut self,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), KafkaError> {
        match self.refusal.take() {
            Some(refusal) if now_ms >= refusal.at_ms => {
                if let Some(answer) = refusal.answer {
                    self.answer_now(out, |body| body.extend_from_slice(&answer));
                }
                Err(KafkaError::Sasl(refusal.why))
            }
            waiting => {
                self.refusal = waiting;
                Ok(())
            }
        }
    }

    /// A raw SASL token (after a version 0 handshake): the reply goes back as a raw frame;
    /// a failure closes the connection with no answer, as Kafka does. Once authenticated, the
    /// connection speaks the Kafka protocol again.
    pub(super) fn sasl_raw_token(
        &mut self,
        token: &[u8],
        out: &mut Vec<u8>,
        now_ms: u64,
    ) -> Result<(), KafkaError> {
        let step = self.step(token);
        self.sasl_raw = matches!(self.sasl, Sasl::Started(_) | Sasl::Scram(_));
        match step {
            Ok(reply) => {
                // PLAIN's success has no token: a v0 client reads an empty frame.
                self.answer_now(out, |body| body.extend_from_slice(&reply));
                Ok(())
            }
            Err((_, why)) => self.refuse(None, why, now_ms, out),
        }
    }

    /// The exchange's next step: the token to send back, or the error code and why. Moves
    /// the connection's SASL state on.
    fn step(&mut self, token: &[u8]) -> Result<Vec<u8>, (i16, String)> {
        let (result, state) = self.next_state(token);
        self.sasl = state;
        result
    }

    /// The next step's result and the state after it.
    fn next_state(&mut self, token: &[u8]) -> (Result<Vec<u8>, (i16, String)>, Sasl) {
        let failed = |why: String| Err((ErrorCode::SaslAuthenticationFailed.code(), why));
        match std::mem::take(&mut self.sasl) {
            Sasl::Started(Mechanism::Plain) => match plain(token) {
                Some((user, password)) => {
                    match self.settings.auth.authenticate(Some(user), Some(password)) {
                        Verdict::User(user) => (Ok(Vec::new()), Sasl::Done(user)),
                        _ => (
                            failed(format!("PLAIN: bad password for {user:?}")),
                            Sasl::None,
                        ),
                    }
                }
                None => (failed("PLAIN: a malformed token".to_owned()), Sasl::None),
            },
            Sasl::Started(Mechanism::Scram(mechanism)) => {
                let mut server = ScramServer::new(mechanism);
                let auth = self.settings.auth.clone();
                let lookup = |user: &str| auth.scram_credential(user, mechanism);
                match server.first(token, lookup, &auth.nonce()) {
                    Ok(reply) => (Ok(reply), Sasl::Scram(Box::new(server))),
                    Err(e) => (failed(format!("{}: {e}", mechanism.name())), Sasl::None),
                }
            }
            Sasl::Scram(mut server) => match server.finish(token) {
                Ok((user, reply)) => (Ok(reply), Sasl::Done(user)),
                Err(e) => (failed(format!("SCRAM: {e}")), Sasl::None),
            },
            state @ (Sasl::None | Sasl::Done(_)) => {
                let code = ErrorCode::IllegalSaslState.code();
                let why = "SaslAuthenticate outside an exchange".to_owned();
                (Err((code, why)), state)
            }
        }
    }
}

/// A PLAIN token's user name and password (RFC 4616: `authzid NUL authcid NUL passwd`); an
/// authorization identity other than the user itself is refused.
fn plain(token: &[u8]) -> Option<(&str, &[u8])> {
    let mut parts = token.splitn(3, |b| *b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    let user = std::str::from_utf8(user).ok().filter(|u| !u.is_empty())?;
    (authzid.is_empty() || authzid == user.as_bytes()).then_some((user, password))
}
