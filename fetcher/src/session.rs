//! Talking to "the server": the ordered candidates from discovery, tried
//! one after another, with the retry policy, under one deadline.
//!
//! A pass tries every candidate (every address of each) in order; a
//! connection, TLS or stream failure moves on to the next; a final 4xx stops
//! at once. After a pass without success, [`crate::retry::decide`] says how
//! long to wait (honouring `Retry-After`) or to give up.
//!
//! It does not choose the candidates (see `discover` and `run`) and does not
//! interpret bodies.

use std::net::SocketAddr;

use rand::rngs::StdRng;
use tokio::time::{sleep, timeout_at, Instant};

use crate::cmdline::HostPort;
use crate::discover::Dns;
use crate::http::{Client, HttpError, Request, Response, Sink};
use crate::log::Log;
use crate::retry::{self, Decision, Failure};

/// Errors of a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server answered with a final status.
    #[error("{0}")]
    Final(HttpError),
    /// Every try failed and the policy gave up.
    #[error("{why}; after {attempts} passes, the last error was: {last}")]
    Exhausted {
        /// Passes over the candidates.
        attempts: u32,
        /// Why the policy stopped.
        why: &'static str,
        /// The last error seen.
        last: String,
    },
}

/// The candidates and the machinery to reach them.
#[derive(Debug)]
pub struct Session<'a> {
    /// The HTTPS client.
    pub client: Client,
    /// The resolver for candidate names (None when there is no nameserver).
    pub dns: Option<Dns>,
    /// Candidates in the order to try.
    pub servers: Vec<HostPort>,
    /// When to stop.
    pub deadline: Instant,
    /// Randomness for the jitter.
    pub rng: StdRng,
    /// Where to log.
    pub log: &'a Log,
    /// The candidate that answered last and the address it answered on:
    /// both are tried first next time, so a boot does not walk again past
    /// the addresses that failed (`localhost` → `[::1]` refused before
    /// `127.0.0.1`) for every request.
    pub last_good: Option<(usize, SocketAddr)>,
}

/// `addrs` with `preferred` (the address that answered last) moved to the
/// front, if it is among them; otherwise unchanged (pure).
pub fn preferring(mut addrs: Vec<SocketAddr>, preferred: Option<SocketAddr>) -> Vec<SocketAddr> {
    if let Some(pos) = preferred.and_then(|p| addrs.iter().position(|a| *a == p)) {
        let a = addrs.remove(pos);
        addrs.insert(0, a);
    }
    addrs
}

impl Session<'_> {
    async fn addrs(&self, hp: &HostPort) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = hp.host.parse() {
            return Ok(vec![SocketAddr::new(ip, hp.port)]);
        }
        let dns = self
            .dns
            .as_ref()
            .ok_or_else(|| format!("cannot resolve {}: no nameserver", hp.host))?;
        let ips = timeout_at(self.deadline, dns.addrs(&hp.host))
            .await
            .map_err(|_| format!("resolving {}: deadline passed", hp.host))?
            .map_err(|e| e.to_string())?;
        Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, hp.port))
            .collect())
    }

    /// Performs `req` against the candidates until one succeeds, a final
    /// status comes back, or the policy gives up.
    pub async fn call(
        &mut self,
        req: &Request<'_>,
        sink: &mut dyn Sink,
    ) -> Result<Response, CallError> {
        let mut attempt = 0u32;
        // The last error of the previous pass, so that a pass cut short by
        // the deadline still says what was going wrong.
        let mut previous: Option<String> = None;
        loop {
            let mut last: Option<(Failure, String)> = None;
            let mut order: Vec<usize> = (0..self.servers.len()).collect();
            if let Some((good, _)) = self.last_good {
                order.retain(|i| *i != good);
                order.insert(0, good);
            }
            for i in order {
                let hp = self.servers[i].clone();
                let worked = self.last_good.filter(|(g, _)| *g == i).map(|(_, a)| a);
                let addrs = match self.addrs(&hp).await {
                    Ok(a) => preferring(a, worked),
                    Err(e) => {
                        self.log.warn(&format!("server {hp}: {e}"));
                        last = Some((Failure::Transport, e));
                        continue;
                    }
                };
                for addr in addrs {
                    let r = timeout_at(
                        self.deadline,
                        self.client.send(&hp.host, hp.port, addr, req, sink),
                    )
                    .await;
                    match r {
                        Err(_) => {
                            let text = match (&last, &previous) {
                                (Some((_, t)), _) | (None, Some(t)) => {
                                    format!("the deadline passed; before that: {t}")
                                }
                                (None, None) => "the deadline passed".to_string(),
                            };
                            last = Some((Failure::Transport, text));
                            break;
                        }
                        Ok(Ok(resp)) => {
                            self.last_good = Some((i, addr));
                            return Ok(resp);
                        }
                        Ok(Err(e)) => {
                            let f = e.failure();
                            if let Failure::Status(s, _) = f {
                                if !retry::retryable_status(s) {
                                    return Err(CallError::Final(e));
                                }
                            }
                            self.log.warn(&format!(
                                "{} {} via {hp} ({addr}): {e}",
                                req.method, req.path
                            ));
                            let is_status = matches!(f, Failure::Status(..));
                            last = Some((f, e.to_string()));
                            if is_status {
                                // The server answered: its other addresses would too.
                                break;
                            }
                        }
                    }
                }
            }
            let (failure, text) =
                last.unwrap_or((Failure::Transport, "no server to try".to_string()));
            previous = Some(text.clone());
            let left = self.deadline.saturating_duration_since(Instant::now());
            match retry::decide(attempt, &failure, left, &mut self.rng) {
                Decision::Wait(d) => {
                    self.log
                        .info(&format!("retrying {} in {} ms", req.path, d.as_millis()));
                    sleep(d).await;
                    attempt += 1;
                }
                Decision::GiveUp(why) => {
                    return Err(CallError::Exhausted {
                        attempts: attempt + 1,
                        why,
                        last: text,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_that_answered_goes_first_next_time() {
        let v6: SocketAddr = "[::1]:8443".parse().expect("addr");
        let v4: SocketAddr = "127.0.0.1:8443".parse().expect("addr");
        let other: SocketAddr = "127.0.0.2:8443".parse().expect("addr");
        assert_eq!(preferring(vec![v6, v4], Some(v4)), [v4, v6]);
        assert_eq!(preferring(vec![v6, v4], None), [v6, v4]);
        // An address no longer among the resolved ones changes nothing.
        assert_eq!(preferring(vec![v6, v4], Some(other)), [v6, v4]);
        assert_eq!(
            preferring(vec![v4, v6, other], Some(other)),
            [other, v4, v6]
        );
    }
}
