//! Budgets and RPM/TPM windows on Redis: reserve, settle, seed, raise, read.

use super::*;

/// What the reserve script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Reserved (and one upstream call counted); the budget's spend and reservations after it.
    Reserved { hold: Hold, spent: i64 },
    /// The budget is spent: final.
    Spent { spent: i64 },
    /// Reservations in flight fill what is left: worth waiting for them.
    Full { spent: i64, reserved: i64 },
    /// Over the RPM limit until `wait` has passed.
    Rpm { wait: Duration },
    /// Over the TPM limit (`used` in the window).
    Tpm { wait: Duration, used: u64 },
}

/// A reservation held on Redis, released by `settle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub(super) rid: String,
    pub(super) budget_key: Option<String>,
    pub(super) tpm_key: Option<String>,
    pub(super) key_id: String,
    pub(super) period_start_ms: i64,
    /// The server's second at which the tokens were counted.
    pub(super) at_s: i64,
}

/// A key's shared figures, for `GET /admin/keys/{id}/spend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedUsage {
    pub spent: i64,
    pub reserved: i64,
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
}

/// The limits of one key, as the scripts take them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub budget_picousd: Option<i64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

fn int(v: &redis::Value) -> i64 {
    match v {
        redis::Value::Int(i) => *i,
        redis::Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        redis::Value::SimpleString(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

impl Shared {
    /// Count one upstream call and reserve `cost` and `tokens` for key `key_id`, atomically
    /// over every replica. `Err(Down)` when Redis did not answer in time.
    pub async fn reserve(
        self: &Arc<Self>,
        key_id: &str,
        period_start_ms: i64,
        limits: Limits,
        cost: i64,
        tokens: u64,
    ) -> Result<Reply, Down> {
        for _ in 0..2 {
            let rid = self.rid();
            let budget_key = self.budget_key(key_id, period_start_ms);
            let (rpm_key, tpm_key) = (self.key(key_id, "rpm"), self.key(key_id, "tpm"));
            let mut inv = self.scripts.reserve.prepare_invoke();
            inv.key(&budget_key)
                .key(&rpm_key)
                .key(&tpm_key)
                .arg(&rid)
                .arg(cost.max(0))
                .arg(dash(limits.budget_picousd))
                .arg(dash(limits.rpm))
                .arg(dash(limits.tpm))
                .arg(tokens)
                .arg(self.cfg.reservation_ttl_ms);
            let mut conn = self.conn();
            let out: Vec<redis::Value> = self.call("reserve", inv.invoke_async(&mut conn)).await?;
            let at = |i: usize| out.get(i).map_or(0, int);
            let released = |i: usize| {
                let n = at(i);
                if n > 0 {
                    self.stats.expired.fetch_add(n as u64, Ordering::Relaxed);
                    // The lapsed requests' real cost, if they reached the ledger, is raised
                    // in later.
                    self.mark_dirty(key_id, period_start_ms, Duration::from_secs(1));
                }
            };
            return Ok(match at(0) {
                0 => {
                    released(4);
                    Reply::Reserved {
                        spent: at(1),
                        hold: Hold {
                            rid,
                            budget_key: limits.budget_picousd.map(|_| budget_key),
                            tpm_key: limits.tpm.map(|_| tpm_key),
                            key_id: key_id.to_owned(),
                            period_start_ms,
                            at_s: at(3),
                        },
                    }
                }
                1 => {
                    released(2);
                    Reply::Spent { spent: at(1) }
                }
                2 => {
                    released(3);
                    Reply::Full {
                        spent: at(1),
                        reserved: at(2),
                    }
                }
                3 => Reply::Rpm {
                    wait: Duration::from_secs(at(1).max(1).unsigned_abs()),
                },
                4 => Reply::Tpm {
                    wait: Duration::from_secs(at(1).max(1).unsigned_abs()),
                    used: at(2).max(0).unsigned_abs(),
                },
                _ => {
                    // Not seeded yet: seed it from the ledger (once, whoever is first), then
                    // reserve again.
                    self.seed(key_id, period_start_ms).await?;
                    continue;
                }
            });
        }
        tracing::error!(
            key = key_id,
            "redis: budget still not seeded after seeding it"
        );
        self.fail();
        Err(Down)
    }

    /// Seed a budget from the ledger unless it is seeded (the reseed race: whoever runs
    /// first seeds, the others change nothing). `true` when this call seeded it.
    pub async fn seed(self: &Arc<Self>, key_id: &str, period_start_ms: i64) -> Result<bool, Down> {
        let spent = match &self.store {
            Some(_) => match self.ledger_spend(key_id, period_start_ms).await {
                Some(s) => s,
                // Without the ledger's figure, do not seed a wrong one.
                None => return Err(Down),
            },
            None => 0,
        };
        // A period's counter outlives the longest period (a month) by a week; `total` budgets
        // (period start 0) never expire.
        let expire_at = if period_start_ms == 0 {
            0
        } else {
            period_start_ms.max(switchyard_types::clock::now_ms()) + 38 * 86_400_000
        };
        let tag = format!("{}@{}", self.replica, switchyard_types::clock::now_ms());
        let mut inv = self.scripts.seed.prepare_invoke();
        inv.key(self.budget_key(key_id, period_start_ms))
            .arg(spent.to_string())
            .arg(&tag)
            .arg(expire_at);
        let mut conn = self.conn();
        let seeded: i64 = self.call("seed", inv.invoke_async(&mut conn)).await?;
        if seeded == 1 {
            self.stats.seeds.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                key = key_id,
                period_start_ms,
                spent_picousd = spent,
                replica = %self.replica,
                "redis: seeded a budget counter from the ledger"
            );
            // Spend still in some replica's ledger buffer is raised in later.
            self.mark_dirty(key_id, period_start_ms, Duration::from_secs(2));
        }
        Ok(seeded == 1)
    }

    /// Replace a reservation by what the request cost and used. Never waits: the script runs
    /// in a task; if Redis cannot take it, the reservation is released when Redis returns
    /// (or lapses by its TTL) and the cost comes from the ledger.
    pub fn settle(self: &Arc<Self>, hold: Hold, cost: i64, reserved_tokens: u64, tokens: u64) {
        let me = self.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let mut inv = me.scripts.settle.prepare_invoke();
            inv.key(hold.budget_key.as_deref().unwrap_or("-"))
                .key(hold.tpm_key.as_deref().unwrap_or("-"))
                .arg(&hold.rid)
                .arg(cost.max(0))
                .arg(hold.at_s)
                .arg(reserved_tokens)
                .arg(tokens)
                .arg(if hold.budget_key.is_some() { "1" } else { "0" })
                .arg(if hold.tpm_key.is_some() { "1" } else { "0" });
            let mut conn = me.conn();
            match me
                .call::<Vec<i64>>("settle", inv.invoke_async(&mut conn))
                .await
            {
                Ok(out) => {
                    if out.get(1) == Some(&0) {
                        // The budget was gone (Redis lost its data): reseed and raise.
                        me.mark_dirty(&hold.key_id, hold.period_start_ms, Duration::ZERO);
                    }
                }
                Err(Down) => me.settle_failed(&hold),
            }
        });
    }

    /// A settle Redis did not take: maybe it ran, maybe not. Release the reservation when Redis
    /// is back (idempotent), and raise the spend to the ledger (never double counts).
    fn settle_failed(&self, hold: &Hold) {
        if let Some(b) = &hold.budget_key {
            if let Ok(mut r) = self.releases.lock()
                && r.len() < MAX_PENDING_RELEASES
            {
                r.push((b.clone(), hold.rid.clone()));
            }
            self.mark_dirty(&hold.key_id, hold.period_start_ms, Duration::from_secs(1));
        }
    }

    pub(super) async fn release_only(
        self: &Arc<Self>,
        budget_key: &str,
        rid: &str,
    ) -> Result<(), Down> {
        let mut inv = self.scripts.settle.prepare_invoke();
        inv.key(budget_key)
            .key("-")
            .arg(rid)
            .arg(0)
            .arg(0)
            .arg(0)
            .arg(0)
            .arg("1")
            .arg("0");
        let mut conn = self.conn();
        self.call::<Vec<i64>>("release", inv.invoke_async(&mut conn))
            .await
            .map(|_| ())
    }

    /// Raise the shared spend to the ledger's (or seed it, if it is missing).
    pub(super) async fn reconcile(
        self: &Arc<Self>,
        key_id: &str,
        period_start_ms: i64,
    ) -> Result<(), Down> {
        let Some(spent) = self.ledger_spend(key_id, period_start_ms).await else {
            return Ok(());
        };
        let mut inv = self.scripts.raise.prepare_invoke();
        inv.key(self.budget_key(key_id, period_start_ms))
            .arg(spent.to_string());
        let mut conn = self.conn();
        let raised: i64 = self.call("raise", inv.invoke_async(&mut conn)).await?;
        match raised {
            1 => {
                self.stats.raised.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    key = key_id,
                    spent_picousd = spent,
                    "redis: raised a budget's shared spend to the ledger's"
                );
            }
            -1 => {
                self.seed(key_id, period_start_ms).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The key's shared spend, reservations and windows.
    pub async fn usage(
        self: &Arc<Self>,
        key_id: &str,
        period_start_ms: i64,
        has_budget: bool,
    ) -> Result<SharedUsage, Down> {
        let mut inv = self.scripts.usage.prepare_invoke();
        inv.key(self.budget_key(key_id, period_start_ms))
            .key(self.key(key_id, "rpm"))
            .key(self.key(key_id, "tpm"))
            .arg(if has_budget { "1" } else { "0" });
        let mut conn = self.conn();
        let out: Vec<redis::Value> = self.call("usage", inv.invoke_async(&mut conn)).await?;
        let at = |i: usize| out.get(i).map_or(0, int);
        Ok(SharedUsage {
            spent: at(0),
            reserved: at(1),
            requests_last_minute: at(2).max(0).unsigned_abs(),
            tokens_last_minute: at(3).max(0).unsigned_abs(),
        })
    }
}
