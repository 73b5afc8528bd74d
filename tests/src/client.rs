//! A minimal blocking HTTPS client for tests: one request per connection,
//! trusting only the given CA, optionally presenting a client certificate
//! (the PKI library's client configuration).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Time one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends one request to `addr`, checking the server's certificate against
/// `server_name`. Returns the status and the body.
pub fn request(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let cfg = satchel_pki::tls::client_config(ca_pem, client).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let authority = format!("{server_name}:{}", addr.port());
    let method = http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
    let path = path.to_string();
    rt.block_on(async move {
        tokio::time::timeout(REQUEST_TIMEOUT, async move {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, authority)
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes()
                .to_vec();
            Ok((status, body))
        })
        .await
        .map_err(|_| "request timed out".to_string())?
    })
}

/// An admin's side of the real server, for the end-to-end tests: the
/// publishing and inventory requests they all make.
pub struct Admin<'a> {
    /// The server's API address.
    pub addr: SocketAddr,
    /// The name its certificate carries.
    pub server_name: &'a str,
    /// Our CA's certificate (PEM).
    pub ca_pem: &'a [u8],
    /// The admin's certificate and key (PEM).
    pub cert: (&'a [u8], &'a [u8]),
}

impl std::fmt::Debug for Admin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Admin<'_> {
    /// `PUT route` with `bundle`; panics unless the server answers 2xx.
    pub fn publish(&self, route: &str, bundle: Vec<u8>) {
        let (status, answer) = request(
            self.addr,
            self.server_name,
            self.ca_pem,
            Some(self.cert),
            "PUT",
            route,
            bundle,
        )
        .expect("publish");
        assert!(
            (200..300).contains(&status),
            "PUT {route}: {status} {}",
            String::from_utf8_lossy(&answer)
        );
    }

    /// The inventory's record of `mac` (`GET /v1/nodes`); panics when the
    /// request fails or the node is not in it.
    pub fn node(&self, mac: &str) -> serde_json::Value {
        let (status, body) = request(
            self.addr,
            self.server_name,
            self.ca_pem,
            Some(self.cert),
            "GET",
            "/v1/nodes",
            Vec::new(),
        )
        .expect("nodes");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["mac"] == mac)
            .cloned()
            .unwrap_or_else(|| panic!("{mac} not in the inventory: {v}"))
    }
}
