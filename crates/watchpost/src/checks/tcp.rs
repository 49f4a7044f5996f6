use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::health::{Check, CheckResult};

/// Passes when a TCP connection to `host:port` opens within the timeout
/// (default 2 s). The observed value is the connect time in milliseconds.
///
/// A successful connect proves the port is open, not that the service behind
/// it works: prefer a check that does a real round trip where you can.
///
/// ```
/// use std::time::Duration;
/// use watchpost::checks::TcpCheck;
/// use watchpost::health::{Check, Status};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let open = TcpCheck::new(listener.local_addr()?.to_string());
/// assert_eq!(open.check().await.status(), Status::Pass);
/// let closed = TcpCheck::new("127.0.0.1:9").timeout(Duration::from_millis(200));
/// assert_eq!(closed.check().await.status(), Status::Fail);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct TcpCheck {
    addr: String,
    timeout: Duration,
}

impl TcpCheck {
    /// A check that connects to `addr` (`"db.internal:5432"`, `"127.0.0.1:6379"`).
    /// The name is resolved on each run.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            timeout: Duration::from_secs(2),
        }
    }

    /// The connect timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Check for TcpCheck {
    /// `system`.
    fn component_type(&self) -> &str {
        "system"
    }

    async fn check(&self) -> CheckResult {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr)).await {
            Ok(Ok(_stream)) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                CheckResult::pass().observed((ms * 1000.0).round() / 1000.0, "ms")
            }
            Ok(Err(error)) => CheckResult::fail(format!("connect failed: {error}")),
            Err(_) => CheckResult::fail(format!(
                "connect timed out after {}",
                humantime::format_duration(self.timeout)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Status;

    #[tokio::test]
    async fn open_port_passes_closed_port_fails() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(
            TcpCheck::new(addr.to_string()).check().await.status(),
            Status::Pass
        );
        drop(listener);
        let closed = TcpCheck::new(addr.to_string()).check().await;
        assert_eq!(closed.status(), Status::Fail);
        assert!(
            closed.output().unwrap().starts_with("connect failed"),
            "{closed:?}"
        );
    }

    #[tokio::test]
    async fn bad_address_fails_cleanly() {
        let r = TcpCheck::new("no port here").check().await;
        assert_eq!(r.status(), Status::Fail);
    }
}
