//! DNS faults: the target's DNS queries are answered with an error code, never answered, or
//! answered late; the rest resolve as before.
//!
//! How: cgroup `connect4/6`, `sendmsg4/6` and `recvmsg4/6` programs on the target's cgroup
//! ([`redirect`]) send its queries to port 53 (or to `--server`) to a responder chaos runs
//! in the target's network namespace ([`responder`]), which parses each query, decides on it
//! ([`DnsFault::decide`]) and forwards what it does not fault to the server the target asked.
//! `recvmsg` rewrites the responder's address back to that server's, so the client accepts the
//! answer. These hooks load wherever cgroup sock_addr programs do (the host kernel included):
//! no BPF LSM, no trampolines.
use std::{fmt, str::FromStr, time::Duration};

use serde::Serialize;

use crate::{Error, fault::Cidr};

mod injection;
mod redirect;
mod responder;

pub use injection::DnsInjection;
pub(crate) use injection::target_netns;

/// The answer code a faulted query gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Rcode {
    /// The name does not exist (getaddrinfo: EAI_NONAME).
    Nxdomain,
    /// The server failed (getaddrinfo: EAI_AGAIN).
    Servfail,
    /// The server refuses to answer.
    Refused,
}

impl Rcode {
    /// Every code, in the order messages list them.
    pub const ALL: [Rcode; 3] = [Rcode::Nxdomain, Rcode::Servfail, Rcode::Refused];

    /// Its name as DNS tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Rcode::Nxdomain => "NXDOMAIN",
            Rcode::Servfail => "SERVFAIL",
            Rcode::Refused => "REFUSED",
        }
    }
}

impl FromStr for Rcode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Rcode, Error> {
        Rcode::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Invalid {
                field: "rcode",
                value: s.to_owned(),
                expected: "one of NXDOMAIN, SERVFAIL, REFUSED".into(),
            })
    }
}

/// What a faulted query gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsEffect {
    /// An answer with this code and no records.
    Rcode(Rcode),
    /// No answer: the client times out.
    Drop,
    /// The real answer, this much later.
    Delay(Duration),
}

impl fmt::Display for DnsEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsEffect::Rcode(r) => f.write_str(r.name()),
            DnsEffect::Drop => f.write_str("drop"),
            DnsEffect::Delay(d) => write!(f, "delay {}", humantime::format_duration(*d)),
        }
    }
}

/// Longest delay: resolvers give up long before (glibc after 5 s per try by default).
pub const MAX_DNS_DELAY: Duration = Duration::from_secs(60);

/// A DNS fault, every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsFault {
    /// Names faulted, lower case without the final dot; a query matches a domain or any name
    /// below it. Empty: every name.
    pub domains: Vec<String>,
    /// What a faulted query gets.
    pub effect: DnsEffect,
    /// Chance that a matching query is faulted, in (0, 1]; 1 when absent.
    pub probability: Option<f64>,
    /// The servers whose queries are taken: this network; every server when absent.
    pub server: Option<Cidr>,
    /// The server port (53).
    pub port: u16,
    /// Count what would be faulted, fault nothing.
    pub dry_run: bool,
}

/// What the responder does with one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Pass it to the server (not matched, or not picked, or a dry run).
    Forward {
        /// Whether its name matched.
        matched: bool,
        /// Whether it would have been faulted (dry run).
        picked: bool,
    },
    /// Fault it.
    Fault(DnsEffect),
}

impl DnsFault {
    /// Checks a domain list entry: a DNS name, lower-cased, without its final dot.
    pub fn domain(s: &str) -> Result<String, Error> {
        let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(Error::Invalid {
                field: "domain",
                value: s.to_owned(),
                expected: "a DNS name such as example.com (letters, digits, `-`, `_`; labels \
                           of 1 to 63 characters)"
                    .into(),
            });
        }
        Ok(d)
    }

    /// Checks the values the types do not: the delay and the probability.
    pub fn validate(&self) -> Result<(), Error> {
        if let DnsEffect::Delay(d) = self.effect
            && (d.is_zero() || d > MAX_DNS_DELAY)
        {
            return Err(Error::Invalid {
                field: "delay",
                value: humantime::format_duration(d).to_string(),
                expected: format!(
                    "a duration above 0 and at most {}",
                    humantime::format_duration(MAX_DNS_DELAY)
                ),
            });
        }
        if let Some(p) = self.probability
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(Error::Invalid {
                field: "probability",
                value: p.to_string(),
                expected: "a number in (0, 1]".into(),
            });
        }
        if self.port == 0 {
            return Err(Error::Invalid {
                field: "port",
                value: "0".into(),
                expected: "a server port in 1..=65535 (DNS uses 53)".into(),
            });
        }
        Ok(())
    }

    /// Whether `name` (as in the query, any case, final dot or not) is one the fault takes.
    pub fn matches(&self, name: &str) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.domains.iter().any(|d| {
            name == *d
                || (name.len() > d.len()
                    && name.ends_with(d.as_str())
                    && name.as_bytes()[name.len() - d.len() - 1] == b'.')
        })
    }

    /// What to do with a query for `name`; `draw` is uniform in [0, 1).
    pub fn decide(&self, name: &str, draw: f64) -> Decision {
        if !self.matches(name) {
            return Decision::Forward {
                matched: false,
                picked: false,
            };
        }
        let picked = self.probability.is_none_or(|p| draw < p);
        if picked && !self.dry_run {
            Decision::Fault(self.effect)
        } else {
            Decision::Forward {
                matched: true,
                picked,
            }
        }
    }

    /// The fault in words, e.g. `NXDOMAIN for example.com`.
    pub fn describe(&self) -> String {
        let names = if self.domains.is_empty() {
            "every name".to_owned()
        } else {
            self.domains.join(",")
        };
        let mut out = format!("{} for {names}", self.effect);
        if let Some(p) = self.probability {
            out.push_str(&format!(" with probability {p}"));
        }
        if let Some(server) = self.server {
            out.push_str(&format!(" via servers in {server}"));
        }
        if self.port != 53 {
            out.push_str(&format!(" on port {}", self.port));
        }
        out
    }
}

/// What a DNS fault did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DnsCounts {
    /// Queries of the target the responder received.
    pub seen: u64,
    /// Those whose name matched.
    pub matched: u64,
    /// Those faulted (would have been, in a dry run).
    pub injected: u64,
    /// Answered NXDOMAIN.
    pub nxdomain: u64,
    /// Answered SERVFAIL.
    pub servfail: u64,
    /// Answered REFUSED.
    pub refused: u64,
    /// Never answered.
    pub dropped: u64,
    /// Answered late.
    pub delayed: u64,
    /// Passed to the server.
    pub forwarded: u64,
    /// Forwarded queries the server did not answer in time, or that could not be sent.
    pub upstream_failed: u64,
    /// Datagrams that were not DNS queries (passed on untouched is impossible: dropped).
    pub malformed: u64,
    /// Connects and sends the kernel programs redirected.
    pub redirected: u64,
    /// Matching connects and sends left alone because more servers were used than chaos has
    /// responder slots for.
    pub no_slot: u64,
}

/// The outcome of one DNS fault, as `chaos inject dns` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct DnsReport {
    /// `dns`.
    pub kind: &'static str,
    /// The fault in words.
    pub fault: String,
    /// The target cgroup directory.
    pub target: String,
    /// Whether it only counted.
    pub dry_run: bool,
    /// The counters.
    #[serde(flatten)]
    pub counts: DnsCounts,
}

impl fmt::Display for DnsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "{:<5} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9}  fault; target",
            "kind",
            "seen",
            "matched",
            "injected",
            "nxdomain",
            "servfail",
            "refused",
            "dropped",
            "delayed",
            "forwarded"
        )?;
        let dry = if self.dry_run { " (dry run)" } else { "" };
        writeln!(
            f,
            "{:<5} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9}  {}{dry}; {}",
            self.kind,
            c.seen,
            c.matched,
            c.injected,
            c.nxdomain,
            c.servfail,
            c.refused,
            c.dropped,
            c.delayed,
            c.forwarded,
            self.fault,
            self.target
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(domains: &[&str]) -> DnsFault {
        DnsFault {
            domains: domains
                .iter()
                .map(|d| DnsFault::domain(d).unwrap())
                .collect(),
            effect: DnsEffect::Rcode(Rcode::Nxdomain),
            probability: None,
            server: None,
            port: 53,
            dry_run: false,
        }
    }

    #[test]
    fn domains_match_themselves_and_names_below_only() {
        let f = fault(&["Example.COM."]);
        assert!(f.matches("example.com."));
        assert!(f.matches("WWW.example.com"));
        assert!(!f.matches("notexample.com"));
        assert!(!f.matches("example.org"));
        assert!(fault(&[]).matches("anything.at.all"));
    }

    #[test]
    fn probability_and_dry_run_decide() {
        let mut f = fault(&["a.test"]);
        f.probability = Some(0.25);
        assert_eq!(
            f.decide("x.a.test", 0.1),
            Decision::Fault(DnsEffect::Rcode(Rcode::Nxdomain))
        );
        assert_eq!(
            f.decide("x.a.test", 0.5),
            Decision::Forward {
                matched: true,
                picked: false
            }
        );
        assert_eq!(
            f.decide("b.test", 0.0),
            Decision::Forward {
                matched: false,
                picked: false
            }
        );
        f.dry_run = true;
        assert_eq!(
            f.decide("a.test", 0.1),
            Decision::Forward {
                matched: true,
                picked: true
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = DnsFault::domain("exa mple.com").unwrap_err().to_string();
        assert!(
            err.contains("domain") && err.contains("exa mple.com"),
            "{err}"
        );
        let mut f = fault(&[]);
        f.effect = DnsEffect::Delay(Duration::from_secs(120));
        assert!(f.validate().unwrap_err().to_string().contains("delay"));
        f.effect = DnsEffect::Drop;
        f.probability = Some(1.5);
        assert!(
            f.validate()
                .unwrap_err()
                .to_string()
                .contains("probability")
        );
        assert!("servfail".parse::<Rcode>().is_ok());
        assert!(
            "NOERROR"
                .parse::<Rcode>()
                .unwrap_err()
                .to_string()
                .contains("NXDOMAIN")
        );
    }
}
