//! The small HTTP server (`tiny_http`) that serves the metrics registry at `/metrics`, over TLS
//! and behind basic auth when a web config file asks (`web_config`). It only encodes the
//! registry; the watch loop keeps it up to date.
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use prometheus_client::{encoding::text::encode, registry::Registry};

use super::web_config::WebConfig;

/// The HTTP server for `/metrics`, listening until dropped.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Listens on `addr` (e.g. `127.0.0.1:9815`), with TLS and basic auth as `web` asks; a busy
    /// or bad address, or a certificate that does not load, is an error now, before anything is
    /// attached.
    pub fn start(addr: &str, registry: Arc<Registry>, web: Option<WebConfig>) -> Result<Self> {
        let server = match web.as_ref().and_then(|w| w.tls.as_ref()) {
            Some(tls) => tiny_http::Server::https(
                addr,
                tiny_http::SslConfig {
                    certificate: tls.certificate.clone(),
                    private_key: tls.private_key.clone(),
                },
            ),
            None => tiny_http::Server::http(addr),
        }
        .map_err(|e| anyhow!("cannot serve metrics on {addr}: {e}"))?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let header = |name: &str, value: &str| {
            tiny_http::Header::from_bytes(name, value)
                .map_err(|()| anyhow!("{name}: {value} is not a valid header"))
        };
        let content_type =
            header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")?;
        let challenge = header("WWW-Authenticate", "Basic realm=\"freezewatch\"")?;
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    let authorization = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.as_str().to_owned());
                    let response = if !web.as_ref().is_none_or(|w| w.authorized(authorization.as_deref())) {
                        tiny_http::Response::from_string("freezewatch: authentication required\n")
                            .with_status_code(401)
                            .with_header(challenge.clone())
                    } else if request.url() == "/metrics" || request.url().starts_with("/metrics?") {
                        let mut body = String::new();
                        match encode(&mut body, &registry) {
                            Ok(()) => {
                                tiny_http::Response::from_string(body).with_header(content_type.clone())
                            }
                            Err(e) => tiny_http::Response::from_string(format!("encoding failed: {e}"))
                                .with_status_code(500),
                        }
                    } else {
                        tiny_http::Response::from_string("freezewatch: metrics are at /metrics\n")
                            .with_status_code(404)
                    };
                    let _ = request.respond(response);
                }
            })
            .context("starting the metrics server")?;
        Ok(Self { server, thread: Some(thread) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
