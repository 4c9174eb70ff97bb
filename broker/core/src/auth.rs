//! Who a client is: the contract between the fronts, which ask, and the credentials the server
//! loads (its users file, a Mosquitto password file), which answer. The fronts never see a
//! password hash; the server never sees a packet. `scram.rs` is SCRAM's server side, for
//! Kafka's SASL.

pub mod scram;

use scram::{ScramCredential, ScramMechanism};

/// What the credentials a client presents come to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A known user whose password matched.
    User(String),
    /// No credentials, or none are checked (no user is configured), and anonymous clients are
    /// allowed.
    Anonymous,
    /// An unknown user, a wrong password, or a user name without a password.
    BadCredentials,
    /// No credentials, and anonymous clients are not allowed.
    NotAuthorized,
}

/// Who a verified TLS client certificate says an MQTT client is, when the server lets the
/// certificate's identity stand as the user name (`tls.identity_as_username`): the CONNECT's
/// user name and password are then not looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateIdentity {
    /// The user the certificate names.
    User(String),
    /// No usable identity (no certificate, no common name, one that is not UTF-8): the
    /// CONNECT is refused as not authorized, for this reason.
    Refused(String),
}

/// Checks the credentials a client presents: an MQTT CONNECT's user name and password, a
/// Kafka client's SASL PLAIN or SCRAM exchange. Runs on the connection's thread: it must not
/// block on I/O (the server checks against credentials it has already loaded).
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The verdict on `username` with `password`.
    fn authenticate(&self, username: Option<&str>, password: Option<&[u8]>) -> Verdict;

    /// The SCRAM keys of `user` for `mechanism`, if the user has them.
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;

    /// A fresh random nonce for a SCRAM exchange: printable ASCII without `,`.
    fn nonce(&self) -> String;
}

/// Lets everyone in as anonymous, whatever they present: a broker with no credentials
/// configured and anonymous access on.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _: Option<&str>, _: Option<&[u8]>) -> Verdict {
        Verdict::Anonymous
    }

    fn scram_credential(&self, _: &str, _: ScramMechanism) -> Option<ScramCredential> {
        None
    }

    fn nonce(&self) -> String {
        // No user has SCRAM keys here: every exchange fails, whatever the nonce.
        "no-users".to_owned()
    }
}
