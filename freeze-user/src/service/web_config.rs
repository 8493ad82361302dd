//! `watch --web.config.file FILE`: TLS and basic auth for `/metrics`, from a file in the format
//! Prometheus exporters share (the exporter-toolkit's, as node_exporter reads it):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt   # PEM; relative paths are from the file's directory
//!   key_file: server.key
//! basic_auth_users:
//!   prometheus: $2y$10$...  # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! What freezewatch does not implement (client certificates, TLS versions and ciphers, HTTP
//! headers) is an error naming the key, never silently ignored.
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error(
        "{path}: {key} is not supported by freezewatch (only cert_file, key_file and basic_auth_users are)"
    )]
    Unsupported { path: PathBuf, key: &'static str },
    #[error("{path}: tls_server_config needs both cert_file and key_file")]
    HalfTls { path: PathBuf },
    #[error("{path}: the password hash of {user} is not a bcrypt hash ($2a$, $2b$ or $2y$)")]
    NotBcrypt { path: PathBuf, user: String },
    #[error("{path}: neither tls_server_config nor basic_auth_users: the file changes nothing")]
    Empty { path: PathBuf },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no unencrypted PKCS#8 or RSA private key in it (openssl genpkey writes PKCS#8)")]
    NoKey { path: PathBuf },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    tls_server_config: Option<TlsFormat>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    http_server_config: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<serde_yaml::Value>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<serde_yaml::Value>,
    curve_preferences: Option<serde_yaml::Value>,
    prefer_server_cipher_suites: Option<bool>,
}

/// The server's certificate chain and key, PEM.
pub struct Tls {
    pub certificate: Vec<u8>,
    pub private_key: Vec<u8>,
}

/// What a web config file asks of the metrics server.
pub struct WebConfig {
    pub tls: Option<Tls>,
    /// User → bcrypt hash; empty: no authentication.
    users: BTreeMap<String, String>,
    /// `Authorization` headers already verified (bcrypt is slow on purpose: a scrape a second
    /// must not cost one verification each), at most `CACHED` of them.
    verified: Mutex<HashSet<String>>,
}

const CACHED: usize = 64;

impl WebConfig {
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| WebConfigError::Read { path: p.to_owned(), source });
        let text = read(path)?;
        let file: FileFormat = serde_yaml::from_slice(&text)
            .map_err(|source| WebConfigError::Parse { path: path.to_owned(), source })?;
        let unsupported = |key| Err(WebConfigError::Unsupported { path: path.to_owned(), key });
        if file.http_server_config.is_some() {
            return unsupported("http_server_config");
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match file.tls_server_config {
            None => None,
            Some(t) => {
                match t.client_auth_type.as_deref() {
                    None | Some("NoClientCert") => {}
                    Some(_) => return unsupported("tls_server_config.client_auth_type"),
                }
                let checks: [(bool, &'static str); 7] = [
                    (t.client_ca_file.is_some(), "tls_server_config.client_ca_file"),
                    (t.client_allowed_sans.is_some(), "tls_server_config.client_allowed_sans"),
                    (t.min_version.is_some(), "tls_server_config.min_version"),
                    (t.max_version.is_some(), "tls_server_config.max_version"),
                    (t.cipher_suites.is_some(), "tls_server_config.cipher_suites"),
                    (t.curve_preferences.is_some(), "tls_server_config.curve_preferences"),
                    (
                        t.prefer_server_cipher_suites.is_some(),
                        "tls_server_config.prefer_server_cipher_suites",
                    ),
                ];
                if let Some((_, key)) = checks.into_iter().find(|(set, _)| *set) {
                    return unsupported(key);
                }
                let (Some(cert), Some(key)) = (t.cert_file, t.key_file) else {
                    return Err(WebConfigError::HalfTls { path: path.to_owned() });
                };
                let (cert, key) = (dir.join(cert), dir.join(key));
                let tls = Tls { certificate: read(&cert)?, private_key: read(&key)? };
                // The server takes what these parsers take, and panics on anything else.
                if rustls_pemfile::certs(&mut tls.certificate.as_slice()).map_or(true, |c| c.is_empty()) {
                    return Err(WebConfigError::NoCertificate { path: cert });
                }
                let pkcs8 = rustls_pemfile::pkcs8_private_keys(&mut tls.private_key.as_slice());
                let rsa = rustls_pemfile::rsa_private_keys(&mut tls.private_key.as_slice());
                if pkcs8.map_or(true, |k| k.is_empty()) && rsa.map_or(true, |k| k.is_empty()) {
                    return Err(WebConfigError::NoKey { path: key });
                }
                Some(tls)
            }
        };
        let users = file.basic_auth_users.unwrap_or_default();
        if let Some((user, _)) =
            users.iter().find(|(_, h)| !["$2a$", "$2b$", "$2y$"].iter().any(|p| h.starts_with(p)))
        {
            return Err(WebConfigError::NotBcrypt { path: path.to_owned(), user: user.clone() });
        }
        if tls.is_none() && users.is_empty() {
            return Err(WebConfigError::Empty { path: path.to_owned() });
        }
        Ok(Self { tls, users, verified: Mutex::new(HashSet::new()) })
    }

    /// Whether a request with this `Authorization` header may read the metrics.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(header) = authorization else { return false };
        if self.verified.lock().is_ok_and(|v| v.contains(header)) {
            return true;
        }
        let ok = basic_credentials(header).is_some_and(|(user, password)| {
            self.users.get(&user).is_some_and(|hash| bcrypt::verify(&password, hash).unwrap_or(false))
        });
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHED {
                v.clear();
            }
            v.insert(header.to_owned());
        }
        ok
    }
}

/// (user, password) of a `Basic` authorization header.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    /// PEM-shaped blocks: what the checks look at (the server would reject these bytes later).
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    fn config(text: &str) -> (tempfile::TempDir, Result<WebConfig, WebConfigError>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).expect("writes");
        std::fs::write(dir.path().join("c.pem"), CERT).expect("writes");
        std::fs::write(dir.path().join("k.pem"), KEY).expect("writes");
        std::fs::write(dir.path().join("plain.pem"), "not PEM").expect("writes");
        let loaded = WebConfig::load(&path);
        (dir, loaded)
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn basic_auth_checks_bcrypt_hashes_and_tls_files_are_read_relative_to_the_file() {
        let hash = bcrypt::hash("s3cret", 4).expect("hashes");
        let (_dir, web) = config(&format!(
            "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\nbasic_auth_users:\n  prom: '{hash}'\n"
        ));
        let web = web.expect("loads");
        let tls = web.tls.as_ref().expect("tls");
        assert_eq!(
            (tls.certificate.as_slice(), tls.private_key.as_slice()),
            (CERT.as_bytes(), KEY.as_bytes())
        );
        assert!(web.authorized(Some(&basic("prom", "s3cret"))));
        assert!(web.authorized(Some(&basic("prom", "s3cret"))), "again, from the cache");
        assert!(!web.authorized(Some(&basic("prom", "wrong"))));
        assert!(!web.authorized(Some(&basic("other", "s3cret"))));
        assert!(!web.authorized(Some("Bearer x")));
        assert!(!web.authorized(None));
    }

    #[test]
    fn what_is_not_implemented_is_an_error_naming_it() {
        let cases = [
            (
                "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n",
                "client_ca_file",
            ),
            (
                "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: TLS13\n",
                "min_version",
            ),
            ("tls_server_config:\n  cert_file: c.pem\n", "needs both cert_file and key_file"),
            ("http_server_config:\n  http2: false\n", "http_server_config"),
            ("basic_auth_users:\n  prom: plain\n", "not a bcrypt hash"),
            ("tls_server_config:\n  cert_file: c.pem\n  key_file: missing.pem\n", "missing.pem"),
            ("tls_sever_config: {}\n", "unknown field `tls_sever_config`"),
            ("{}\n", "changes nothing"),
            ("tls_server_config:\n  cert_file: plain.pem\n  key_file: k.pem\n", "no PEM certificate"),
            (
                "tls_server_config:\n  cert_file: c.pem\n  key_file: plain.pem\n",
                "no unencrypted PKCS#8 or RSA",
            ),
        ];
        for (text, says) in cases {
            let (_dir, web) = config(text);
            let err = web.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
