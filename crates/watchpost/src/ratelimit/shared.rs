//! [`RateLimitStore`]: rate-limit state kept outside the process (Redis), so
//! that every replica shares one budget per client; and [`Verdict`], what
//! [`RateLimiter::check_request`](super::RateLimiter::check_request)
//! returns, decided at once in memory or pending on the store.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::keyed::Decision;
use super::limiter::{Outcome, Policy};
use super::quota::Quota;

/// The future a [`RateLimitStore`] answers with.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send + 'static>>;

/// Where a [`RateLimiter`](super::RateLimiter) keeps its counts when they
/// must be shared between the replicas of a service: with one store, ten
/// replicas give a client `10/min` in total, not `10/min` each.
///
/// `watchpost_redis::RedisRateLimiter` is the implementation this project
/// ships (GCRA in one Lua script on the Redis server's clock). Give it to
/// the limiter with [`RateLimiter::store`](super::RateLimiter::store).
///
/// A store **never fails**: when its backend is unreachable it decides by
/// its own policy (fail open: allow; or fail closed: reject), so a request
/// never errors because the store is down.
///
/// # Examples
///
/// A store that counts in memory behind an `await`, standing in for a
/// remote one:
///
/// ```
/// use std::net::IpAddr;
/// use watchpost::ratelimit::{
///     Decision, DecisionFuture, KeyedRateLimiter, Quota, RateLimitRequest, RateLimitStore, Verdict,
///     RateLimiter,
/// };
///
/// struct Local(KeyedRateLimiter<String>);
///
/// impl RateLimitStore for Local {
///     fn check(&self, key: &str, _quota: Quota) -> DecisionFuture {
///         let decision = self.0.check(&key.to_owned());
///         Box::pin(async move { decision })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quota: Quota = "1/min".parse()?;
/// let limiter = RateLimiter::per_ip(quota).store(Local(KeyedRateLimiter::new(quota)));
/// let headers = http::HeaderMap::new();
/// let peer: IpAddr = "203.0.113.7".parse()?;
/// let request = RateLimitRequest::new("GET", "/", Some(peer), &headers);
/// assert!(matches!(limiter.check_request(&request), Verdict::Pending(_)));
/// assert!(limiter.check_request(&request).await.is_rejected());
/// # Ok(()) }
/// ```
pub trait RateLimitStore: Send + Sync + 'static {
    /// Counts one request under `key` against `quota`, and decides.
    ///
    /// `key` names the quota's rule and the client, such as
    /// `default:203.0.113.7` or `/api/chat:2001:db8:1:2::` (IPv6 clients
    /// grouped by prefix); `quota` is that rule's. The decision's
    /// `remaining`, `reset_after` and `retry_after` fill the response
    /// headers, as the in-memory limiter's do.
    fn check(&self, key: &str, quota: Quota) -> DecisionFuture;
}

impl<T: RateLimitStore + ?Sized> RateLimitStore for Arc<T> {
    fn check(&self, key: &str, quota: Quota) -> DecisionFuture {
        (**self).check(key, quota)
    }
}

/// What [`RateLimiter::check_request`](super::RateLimiter::check_request)
/// returns: decided at once (in memory, or not counted), or waiting for
/// the limiter's [`RateLimitStore`].
///
/// `.await` it for the [`Outcome`] either way; adapters look at the
/// variant to keep the in-memory path free of any future.
#[must_use = "a check does nothing until its outcome is used"]
#[derive(Debug)]
pub enum Verdict {
    /// Decided.
    Ready(Outcome),
    /// Waiting for the store: await it.
    Pending(VerdictFuture),
}

impl Verdict {
    /// The resolved client address, known before the store answers.
    pub fn client_ip(&self) -> Option<IpAddr> {
        match self {
            Verdict::Ready(outcome) => outcome.client_ip(),
            Verdict::Pending(future) => future.client_ip(),
        }
    }

    /// The outcome if it is decided, `None` when waiting for a store.
    pub fn ready(self) -> Option<Outcome> {
        match self {
            Verdict::Ready(outcome) => Some(outcome),
            Verdict::Pending(_) => None,
        }
    }
}

impl IntoFuture for Verdict {
    type Output = Outcome;
    type IntoFuture = VerdictFuture;

    fn into_future(self) -> VerdictFuture {
        match self {
            Verdict::Ready(outcome) => VerdictFuture {
                state: State::Ready(Some(outcome)),
            },
            Verdict::Pending(future) => future,
        }
    }
}

/// The [`Outcome`] of a [`Verdict`], once the store has decided.
#[must_use = "futures do nothing unless polled"]
pub struct VerdictFuture {
    state: State,
}

/// Boxed while waiting (a round trip to the store dwarfs the allocation),
/// so that a [`Verdict`] is no bigger than an [`Outcome`] on the
/// in-memory path.
enum State {
    Ready(Option<Outcome>),
    Waiting(Box<Waiting>),
}

struct Waiting {
    decision: DecisionFuture,
    policy: Arc<Policy>,
    template: Outcome,
}

impl VerdictFuture {
    /// Waits for `decision`, then answers as `template` (a not-counted
    /// outcome carrying the client and the answer's settings) would with
    /// that decision under `policy`.
    pub(crate) fn waiting(
        decision: DecisionFuture,
        policy: Arc<Policy>,
        template: Outcome,
    ) -> Self {
        Self {
            state: State::Waiting(Box::new(Waiting {
                decision,
                policy,
                template,
            })),
        }
    }

    fn client_ip(&self) -> Option<IpAddr> {
        match &self.state {
            State::Ready(outcome) => outcome.as_ref().and_then(Outcome::client_ip),
            State::Waiting(waiting) => waiting.template.client_ip(),
        }
    }
}

impl fmt::Debug for VerdictFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerdictFuture")
            .field("client_ip", &self.client_ip())
            .field("decided", &matches!(self.state, State::Ready(_)))
            .finish()
    }
}

impl Future for VerdictFuture {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(outcome) => match outcome.take() {
                Some(outcome) => Poll::Ready(outcome),
                None => panic!("`VerdictFuture` polled after completion"),
            },
            State::Waiting(waiting) => {
                let decision = match waiting.decision.as_mut().poll(cx) {
                    Poll::Ready(decision) => decision,
                    Poll::Pending => return Poll::Pending,
                };
                let outcome = waiting
                    .template
                    .clone()
                    .counted(decision, waiting.policy.clone());
                this.state = State::Ready(None);
                Poll::Ready(outcome)
            }
        }
    }
}
