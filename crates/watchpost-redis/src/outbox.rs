//! The outbox on Redis: alerts not yet delivered to every sink, kept
//! across restarts and taken over by the next process or another replica.
//!
//! - `{prefix}:outbox:rec:{id}`: a hash, `body`, `deadline` (unix ms) and
//!   one `sink:{name}` field per sink that still needs it; it expires an
//!   hour after its deadline, so memory stays bounded whatever happens.
//! - `{prefix}:outbox:of:{owner}`: the ids a process owns.
//!   This set and the next expire with the newest record put in them.
//! - `{prefix}:outbox:lease:{owner}`: set while the owner runs (renewed
//!   every 10 s, for 30 s), deleted when it stops.
//! - `{prefix}:outbox:owners`: every owner with records.
//!
//! Adoption is one script: the ids of every owner whose lease is gone move
//! to the adopter's set, so two processes adopting at once never both get
//! a record. The scripts name keys they build from the prefix, so the
//! outbox needs a standalone Redis (or Sentinel), not a cluster.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use watchpost::alert::{OutboxRecord, StoreError, OUTBOX_LEASE};

use crate::store::{ms, unix_ms, RedisStore};

/// KEYS: record, owner's set, owners, owner's lease. ARGV: id, owner,
/// body, deadline ms, ttl ms, lease ms, sinks...
const PUT: &str = r"
redis.call('HSET', KEYS[1], 'body', ARGV[3], 'deadline', ARGV[4])
for i = 7, #ARGV do redis.call('HSET', KEYS[1], 'sink:' .. ARGV[i], '1') end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('SET', KEYS[4], '1', 'PX', ARGV[6])
return 1
";

/// KEYS: record, owner's set. ARGV: sink, id. 1 if the record is gone.
const ACK: &str = r"
redis.call('HDEL', KEYS[1], 'sink:' .. ARGV[1])
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 5) == 'sink:' then return 0 end
end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
";

/// KEYS: owners, adopter's set, adopter's lease. ARGV: adopter, lease ms,
/// key prefix (`{prefix}:outbox`), the sets' ttl ms. The adopted ids.
const ADOPT: &str = r"
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
local adopted = {}
for _, owner in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if owner ~= ARGV[1] and redis.call('EXISTS', ARGV[3] .. ':lease:' .. owner) == 0 then
    local set = ARGV[3] .. ':of:' .. owner
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      redis.call('SADD', KEYS[2], id)
      table.insert(adopted, id)
    end
    redis.call('DEL', set)
    redis.call('SREM', KEYS[1], owner)
  end
end
if #adopted > 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return adopted
";

/// KEYS: lease, owner's set, owners. ARGV: owner.
const RELEASE: &str = r"
redis.call('DEL', KEYS[1])
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
";

/// The outbox's scripts, hashed once.
pub(crate) struct Scripts {
    put: Script,
    ack: Script,
    adopt: Script,
    release: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            put: Script::new(PUT),
            ack: Script::new(ACK),
            adopt: Script::new(ADOPT),
            release: Script::new(RELEASE),
        }
    }
}

/// Records stay this long past their deadline (then Redis forgets them).
const GRACE: Duration = Duration::from_secs(3600);

/// How long the owner sets live after an adoption (records adopted are at
/// most a max age old, usually ten minutes).
const SETS_TTL: Duration = Duration::from_secs(24 * 3600);

fn down() -> StoreError {
    StoreError::new("redis unavailable")
}

impl RedisStore {
    fn outbox_key(&self, kind: &str, name: &str) -> String {
        format!("{}:outbox:{kind}:{name}", self.prefix())
    }

    pub(crate) async fn put_record(
        &self,
        owner: &str,
        record: &OutboxRecord,
    ) -> Result<(), StoreError> {
        let keys = [
            self.outbox_key("rec", &record.id),
            self.outbox_key("of", owner),
            format!("{}:outbox:owners", self.prefix()),
            self.outbox_key("lease", owner),
        ];
        let ttl = record
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + GRACE;
        let scripts = self.scripts();
        self.run_shared(|mut conn| async move {
            let mut call = scripts.put.prepare_invoke();
            for key in &keys {
                call.key(key);
            }
            call.arg(&record.id)
                .arg(owner)
                .arg(&record.body)
                .arg(unix_ms(record.deadline))
                .arg(ms(ttl))
                .arg(ms(OUTBOX_LEASE));
            for sink in &record.sinks {
                call.arg(sink);
            }
            call.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
        .ok_or_else(down)
    }

    pub(crate) async fn ack_record(
        &self,
        owner: &str,
        id: &str,
        sink: &str,
    ) -> Result<(), StoreError> {
        let rec = self.outbox_key("rec", id);
        let set = self.outbox_key("of", owner);
        let scripts = self.scripts();
        self.run_shared(|mut conn| async move {
            let mut call = scripts.ack.key(&rec);
            call.key(&set).arg(sink).arg(id);
            call.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
        .ok_or_else(down)
    }

    pub(crate) async fn adopt_records(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let owners = format!("{}:outbox:owners", self.prefix());
        let set = self.outbox_key("of", owner);
        let own_lease = self.outbox_key("lease", owner);
        let base = format!("{}:outbox", self.prefix());
        let scripts = self.scripts();
        let ids = self
            .run_shared(|mut conn| async move {
                let mut call = scripts.adopt.key(&owners);
                call.key(&set)
                    .key(&own_lease)
                    .arg(owner)
                    .arg(ms(lease))
                    .arg(&base)
                    .arg(ms(SETS_TTL));
                call.invoke_async::<Vec<String>>(&mut conn).await
            })
            .await
            .ok_or_else(down)?;
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            let rec = self.outbox_key("rec", &id);
            let fields = self
                .run_shared(|mut conn| async move {
                    redis::cmd("HGETALL")
                        .arg(&rec)
                        .query_async::<Vec<(String, String)>>(&mut conn)
                        .await
                })
                .await
                .ok_or_else(down)?;
            let mut body = None;
            let mut deadline = None;
            let mut sinks = Vec::new();
            for (field, value) in fields {
                match field.as_str() {
                    "body" => body = Some(value),
                    "deadline" => deadline = value.parse::<u64>().ok(),
                    _ => {
                        if let Some(sink) = field.strip_prefix("sink:") {
                            sinks.push(sink.to_owned());
                        }
                    }
                }
            }
            match (body, deadline) {
                (Some(body), Some(deadline)) if !sinks.is_empty() => {
                    let deadline = UNIX_EPOCH + Duration::from_millis(deadline);
                    records.push(OutboxRecord::new(id, sinks, deadline, body));
                }
                // Expired, or acknowledged meanwhile: forget the id.
                _ => {
                    let set = self.outbox_key("of", owner);
                    let _ = self
                        .run_shared(|mut conn| async move {
                            redis::cmd("SREM")
                                .arg(&set)
                                .arg(&id)
                                .query_async::<i64>(&mut conn)
                                .await
                        })
                        .await;
                }
            }
        }
        Ok(records)
    }

    pub(crate) async fn release_owner(&self, owner: &str) -> Result<(), StoreError> {
        let lease = self.outbox_key("lease", owner);
        let set = self.outbox_key("of", owner);
        let owners = format!("{}:outbox:owners", self.prefix());
        let scripts = self.scripts();
        self.run_shared(|mut conn| async move {
            let mut call = scripts.release.key(&lease);
            call.key(&set).key(&owners).arg(owner);
            call.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
        .ok_or_else(down)
    }
}
