//! Scale-out on Redis, against real processes: several gateway replicas, one redis-server, one
//! Postgres. Budgets, RPM, the cache and key revocations are shared exactly; a Redis outage is
//! survived in `local` mode and re-synced without double counting; a replica killed while it
//! holds reservations gives them back after their TTL; replicas starting at once seed a budget
//! once.
//!
//! Needs `redis-server` and `$SWITCHYARD_TEST_POSTGRES_URL` (`.ci/run` provides both and sets
//! `SWITCHYARD_REQUIRE_REDIS=1` and `SWITCHYARD_REQUIRE_POSTGRES=1`, so nothing is skipped there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{Client, PgSchema, RedisServer, Running};
use switchyard_store::{SpendStore, Store};

const ADMIN: &str = "admin-key-for-the-scale-tests-0123";

/// Fast simulated models, so that money tests do not wait for realistic latencies.
const FAST_SIM: &str = r#"
[sim.models."gpt-4o-mini"]
ttft_ms = { mean = 20, stddev = 1 }
tpot_ms = { mean = 1, stddev = 0 }
"#;

/// The answer is always cut at `max_tokens` (the simulator writes more), so every answer to
/// one prompt costs the same, and that cost is the request's estimate.
const MAX_TOKENS: u32 = 8;

struct Cluster {
    redis: RedisServer,
    _cache: Option<RedisServer>,
    pg: Option<PgSchema>,
    replicas: Vec<Running>,
    clients: Vec<Client>,
}

struct Options<'a> {
    replicas: usize,
    /// Extra `[redis]` keys.
    redis: &'a str,
    cache: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            replicas: 2,
            redis: "",
            cache: false,
        }
    }
}

fn config(redis: &RedisServer, cache: Option<&RedisServer>, extra: &str, own: &str) -> String {
    let cache_url = cache.map_or(String::new(), |c| format!("cache_url = \"{}\"\n", c.url()));
    format!(
        "[auth]\nmode = \"keys\"\nbudget_wait_ms = 15000\n\n[redis]\nurl = \"{}\"\n\
         timeout_ms = 500\n{cache_url}{extra}\n{own}\n{FAST_SIM}",
        redis.url()
    )
}

/// Start `n` replicas at once (threads), each with its own config text. They run without the
/// demo's policies: these tests are about shared budgets, rates and caches, and a policy's own
/// 10 ms wall-clock limit can fail a request closed (503) when three replicas, Redis and Postgres
/// share two loaded cores.
fn start_replicas(store_url: &str, configs: Vec<String>) -> Vec<Running> {
    let no_policies = std::env::temp_dir().join("switchyard-scale-no-policies");
    std::fs::create_dir_all(&no_policies).unwrap();
    let no_policies = &no_policies;
    std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .into_iter()
            .map(|cfg| {
                s.spawn(move || {
                    Running::builder()
                        .env("SWITCHYARD_ADMIN_KEY", ADMIN)
                        .env("SWITCHYARD_POLICIES", no_policies.display().to_string())
                        .store_url(store_url)
                        .demo_with(&cfg)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

impl Cluster {
    async fn start(test: &str, o: Options<'_>) -> Option<Cluster> {
        let redis = RedisServer::start()?;
        let cache = if o.cache {
            Some(RedisServer::start_with(&[
                "--maxmemory",
                "64mb",
                "--maxmemory-policy",
                "allkeys-lru",
            ])?)
        } else {
            None
        };
        let pg = PgSchema::create("e2e_scale", test).await?;
        let configs = (0..o.replicas)
            .map(|_| config(&redis, cache.as_ref(), o.redis, ""))
            .collect();
        let url = pg.url.clone();
        let replicas = tokio::task::spawn_blocking(move || start_replicas(&url, configs))
            .await
            .unwrap();
        let clients = replicas.iter().map(|r| Client::new(r, ADMIN)).collect();
        Some(Cluster {
            redis,
            _cache: cache,
            pg: Some(pg),
            replicas,
            clients,
        })
    }

    fn store_url(&self) -> String {
        self.pg.as_ref().unwrap().url.clone()
    }

    async fn finish(mut self) {
        self.clients.clear();
        self.replicas.clear();
        if let Some(pg) = self.pg.take() {
            pg.drop().await;
        }
    }
}

fn ask(text: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "max_tokens": MAX_TOKENS,
        "temperature": 0.7,
        "messages": [{"role": "user", "content": text}],
    })
}

async fn spend(c: &Client, id: &str) -> Value {
    let (s, v) = c
        .admin(
            reqwest::Method::GET,
            &format!("/admin/keys/{id}/spend"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// What one answer to `body` costs, in picodollars (a key of its own on replica 0).
async fn cost_of_one(c: &Client, body: &Value) -> i64 {
    let (id, key) = c.key(json!({"name": "probe"})).await;
    let (s, _, v) = c.chat(Some(&key), body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["usage"]["completion_tokens"], MAX_TOKENS,
        "the answer is cut at max_tokens: {v}"
    );
    // An unlimited key is counted locally: its spend is this replica's.
    let mut spent = 0;
    for _ in 0..100 {
        spent = spend(c, &id).await["spent_picousd"].as_i64().unwrap();
        if spent > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(spent > 0);
    spent
}

/// `n` requests at once, spread round-robin over the replicas; their statuses.
async fn spread(cluster: &Cluster, key: &str, body: &Value, n: usize) -> Vec<(u16, Value)> {
    futures::stream::iter(0..n)
        .map(|i| {
            let c = &cluster.clients[i % cluster.clients.len()];
            async move {
                let (s, _, v) = c.chat(Some(key), body).await;
                (s, v)
            }
        })
        .buffer_unordered(n)
        .collect()
        .await
}

/// Poll until the key's shared reservations are all settled; its shared spend then.
async fn settled_spend(c: &Client, id: &str) -> i64 {
    for _ in 0..200 {
        let v = spend(c, id).await;
        assert_eq!(v["source"], "redis", "{v}");
        if v["reserved_usd"].as_f64() == Some(0.0) {
            return v["spent_picousd"].as_i64().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("reservations never settled: {}", spend(c, id).await);
}

/// The ledger's spend of a key (all periods), once it stops changing at `want`.
async fn ledger_spend(store_url: &str, id: &str, want: i64) -> i64 {
    let store = Store::connect(store_url).await.unwrap();
    let mut got = 0;
    for _ in 0..100 {
        got = SpendStore::spend_history(&store, id)
            .await
            .unwrap()
            .iter()
            .map(|(_, t)| t.cost_picousd)
            .sum();
        if got == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
    got
}

async fn budget_holds_over(replicas: usize, test: &str) {
    let Some(cluster) = Cluster::start(
        test,
        Options {
            replicas,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let body = ask("what is the weather like");
    let one = cost_of_one(&cluster.clients[0], &body).await;
    // The budget fits ten answers exactly; each answer's estimate is its cost.
    let budget_usd = one as f64 * 10.0 / 1e12;
    let (id, key) = cluster.clients[0]
        .key(json!({"name": "ten", "budget_usd": budget_usd, "budget_period": "total"}))
        .await;
    let results = spread(&cluster, &key, &body, 50).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let others: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s != 200 && *s != 402 && *s != 429)
        .collect();
    assert!(others.is_empty(), "{others:?}");
    let spent = settled_spend(&cluster.clients[replicas - 1], &id).await;
    let budget = (budget_usd * 1e12).round() as i64;
    eprintln!(
        "{replicas} replicas, budget of 10 answers ({budget} pico): {ok} admitted of 50, spent \
         {spent} pico = {:.3} budgets",
        spent as f64 / budget as f64
    );
    assert!(
        (10..=11).contains(&ok),
        "about ten admitted over all replicas, not one budget per replica: {ok}"
    );
    assert!(
        spent <= budget + one,
        "overspend is at most one estimate over all replicas: {spent} > {budget} + {one}"
    );
    assert!(
        spent >= budget - one,
        "the budget was spent: {spent} of {budget}"
    );
    assert_eq!(
        spent,
        one * ok as i64,
        "the shared spend is the answers' cost"
    );
    // The ledger (the record) agrees to the picodollar.
    assert_eq!(ledger_spend(&cluster.store_url(), &id, spent).await, spent);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_budget_overspending_by_at_most_one_estimate() {
    budget_holds_over(2, "two_replicas_share_one_budget").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_budget_overspending_by_at_most_one_estimate() {
    budget_holds_over(3, "three_replicas_share_one_budget").await;
}

async fn rpm_holds_over(replicas: usize, test: &str) {
    let Some(cluster) = Cluster::start(
        test,
        Options {
            replicas,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (_, key) = cluster.clients[0]
        .key(json!({"name": "ten a minute", "rpm": 10}))
        .await;
    let results = spread(&cluster, &key, &ask("hello"), 50).await;
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let limited = results.iter().filter(|(s, _)| *s == 429).count();
    eprintln!("{replicas} replicas, rpm 10: {ok} admitted, {limited} × 429 of 50");
    assert_eq!(ok, 10, "ten a minute over all replicas: {results:?}");
    assert_eq!(limited, 40);
    for (_, v) in results.iter().filter(|(s, _)| *s == 429) {
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains("10 requests per minute"), "{m}");
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_rpm_window() {
    rpm_holds_over(2, "two_replicas_share_one_rpm_window").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_rpm_window() {
    rpm_holds_over(3, "three_replicas_share_one_rpm_window").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_entry_written_by_one_replica_is_served_by_another_streamed_or_not() {
    let Some(cluster) = Cluster::start(
        "a_cache_entry_written_by_one_replica",
        Options {
            cache: true,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let (a, b) = (&cluster.clients[0], &cluster.clients[1]);
    let (_, key) = a.key(json!({"name": "cached"})).await;
    let deterministic = |text: &str, stream: bool| {
        json!({
            "model": "gpt-4o-mini",
            "temperature": 0,
            "max_tokens": 30,
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": text}],
        })
    };
    // Written by A as a complete answer, read by B: complete, then as a stream.
    let body = deterministic("name three rivers", false);
    let (s, h, first) = a.chat(Some(&key), &body).await;
    assert_eq!(
        (s, h["x-switchyard-cache"].to_str().unwrap()),
        (200, "miss")
    );
    let mut hit = None;
    for _ in 0..100 {
        let (s, h, v) = b.chat(Some(&key), &body).await;
        assert_eq!(s, 200);
        if h["x-switchyard-cache"] == "hit" {
            hit = Some(v);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hit = hit.expect("B answers from A's entry");
    assert_eq!(
        hit["choices"][0]["message"]["content"],
        first["choices"][0]["message"]["content"]
    );
    let sse = stream_text(b, &key, &deterministic("name three rivers", true)).await;
    assert_eq!(sse.0, "hit");
    assert_proper_sse(
        &sse.1,
        first["choices"][0]["message"]["content"].as_str().unwrap(),
    );

    // Written by A as a stream, read by B as a stream.
    let body = deterministic("name three mountains", true);
    let (cache, text) = stream_text(a, &key, &body).await;
    assert_eq!(cache, "miss");
    let written = content_of(&text);
    let mut replay = None;
    for _ in 0..100 {
        let (cache, text) = stream_text(b, &key, &body).await;
        if cache == "hit" {
            replay = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_proper_sse(&replay.expect("B replays A's streamed entry"), &written);
    cluster.finish().await;
}

/// A streamed call: (the `x-switchyard-cache` header, the SSE body).
async fn stream_text(c: &Client, key: &str, body: &Value) -> (String, String) {
    let resp = c
        .http
        .post(format!("{}/v1/chat/completions", c.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let cache = resp.headers()["x-switchyard-cache"]
        .to_str()
        .unwrap()
        .to_owned();
    (cache, resp.text().await.unwrap())
}

fn events(sse: &str) -> Vec<Value> {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn content_of(sse: &str) -> String {
    events(sse)
        .iter()
        .filter_map(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// Several chunks, the text, a finish reason, a usage chunk, then `[DONE]`.
fn assert_proper_sse(sse: &str, text: &str) {
    let ev = events(sse);
    assert!(ev.len() >= 3, "a stream, not one body: {sse}");
    assert_eq!(content_of(sse), text);
    assert!(
        ev.iter()
            .any(|e| e["choices"][0]["finish_reason"].is_string()),
        "{sse}"
    );
    assert!(
        ev.iter()
            .any(|e| e["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0),
        "usage in the replay: {sse}"
    );
    assert!(sse.trim_end().ends_with("data: [DONE]"), "{sse}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_revoked_on_one_replica_is_refused_by_another_within_100_ms() {
    let Some(cluster) = Cluster::start("a_key_revoked_on_one_replica", Options::default()).await
    else {
        return;
    };
    let (a, b) = (&cluster.clients[0], &cluster.clients[1]);
    let (id, key) = a.key(json!({"name": "to revoke"})).await;
    // B holds the key (it looked it up on first sight).
    let (s, _, v) = b.chat(Some(&key), &ask("hi")).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = a
        .admin(reqwest::Method::DELETE, &format!("/admin/keys/{id}"), None)
        .await;
    assert!(s == 200 || s == 204, "{s} {v}");
    let revoked = Instant::now();
    let mut refused = None;
    while revoked.elapsed() < Duration::from_millis(100) {
        let (s, _) = b.get("/ai/models", Some(&key)).await;
        if s == 401 {
            refused = Some(revoked.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let after = refused.expect("B refuses the revoked key within 100 ms (pub/sub)");
    eprintln!("revoked on A; refused by B after {after:?}");
    let (s, _, v) = b.chat(Some(&key), &ask("hi")).await;
    assert_eq!(s, 401, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_mid_run_local_mode_keeps_serving_and_resyncs_without_double_counting() {
    let Some(mut cluster) = Cluster::start(
        "redis_killed_mid_run",
        Options {
            redis: "on_failure = \"local\"\n",
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let body = ask("what is the weather like");
    let one = cost_of_one(&cluster.clients[0], &body).await;
    let (id, key) = cluster.clients[0]
        .key(json!({"name": "big", "budget_usd": 1.0, "budget_period": "total"}))
        .await;
    let ok = |r: &[(u16, Value)]| r.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok(&spread(&cluster, &key, &body, 10).await), 10);
    assert_eq!(settled_spend(&cluster.clients[0], &id).await, 10 * one);

    cluster.redis.kill();
    let during = spread(&cluster, &key, &body, 10).await;
    assert_eq!(ok(&during), 10, "local mode keeps serving: {during:?}");
    for c in &cluster.clients {
        assert_eq!(c.metric("switchyard_redis_up").await, 0.0);
        assert!(
            c.metric("switchyard_redis_fallbacks_total{use=\"budgets\"}")
                .await
                > 0.0
        );
    }
    // The spend endpoint says whose figures it shows.
    assert_eq!(spend(&cluster.clients[0], &id).await["source"], "local");

    cluster.redis.restart();
    for c in &cluster.clients {
        let mut up = 0.0;
        for _ in 0..100 {
            up = c.metric("switchyard_redis_up").await;
            if up == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(up, 1.0, "the replica uses Redis again");
    }
    assert_eq!(ok(&spread(&cluster, &key, &body, 10).await), 10);
    // Re-synced from the ledger: all 30 answers, each counted once.
    let want = 30 * one;
    let mut shared = 0;
    for _ in 0..300 {
        shared = settled_spend(&cluster.clients[1], &id).await;
        if shared == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(shared, want, "shared spend after the outage");
    assert_eq!(ledger_spend(&cluster.store_url(), &id, want).await, want);
    // And it stays there: the second raise (10 s later) adds nothing.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(settled_spend(&cluster.clients[0], &id).await, want);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closed_mode_refuses_limited_keys_with_503_while_redis_is_down() {
    let Some(mut cluster) = Cluster::start(
        "closed_mode_refuses",
        Options {
            redis: "on_failure = { budgets = \"closed\", rates = \"local\" }\n",
            replicas: 1,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let c = &cluster.clients[0];
    let (_, budgeted) = c.key(json!({"name": "b", "budget_usd": 1.0})).await;
    let (_, rated) = c.key(json!({"name": "r", "rpm": 100})).await;
    let (_, free) = c.key(json!({"name": "f"})).await;
    cluster.redis.kill();
    let c = &cluster.clients[0];
    let (s, h, v) = c.chat(Some(&budgeted), &ask("hi")).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "limits_unavailable");
    assert!(h.contains_key("retry-after"));
    let (s, _, v) = c.chat(Some(&rated), &ask("hi")).await;
    assert_eq!(s, 200, "rates fall back to local counters: {v}");
    let (s, _, v) = c.chat(Some(&free), &ask("hi")).await;
    assert_eq!(s, 200, "a key without limits never needs Redis: {v}");
    assert!(c.metric("switchyard_redis_refused_total").await >= 1.0);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_holding_reservations_gives_them_back_after_the_ttl() {
    // Replica 0 answers slowly (its simulator takes 30 s), so its requests hold reservations.
    let slow = "[sim.models.\"gpt-4o-mini\"]\nttft_ms = { mean = 30000, stddev = 1 }\n";
    let Some(cluster) = Cluster::start(
        "a_replica_killed_holding_reservations",
        Options {
            redis: "reservation_ttl_ms = 2000\n",
            replicas: 1,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    // A second replica, slow (same store and Redis).
    let url = cluster.store_url();
    let cfg =
        config(&cluster.redis, None, "reservation_ttl_ms = 2000\n", slow).replace(FAST_SIM, "");
    let slow_replica = tokio::task::spawn_blocking(move || start_replicas(&url, vec![cfg]))
        .await
        .unwrap()
        .pop()
        .unwrap();
    let body = ask("what is the weather like");
    let one = cost_of_one(&cluster.clients[0], &body).await;
    let budget_usd = one as f64 * 5.0 / 1e12;
    let b = &cluster.clients[0];
    let (id, key) = b
        .key(json!({"name": "five", "budget_usd": budget_usd, "budget_period": "total"}))
        .await;
    let slow_client = Client::new(&slow_replica, ADMIN);
    let hanging: Vec<_> = (0..5)
        .map(|_| {
            let (http, base, key, body) = (
                slow_client.http.clone(),
                slow_client.base.clone(),
                key.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let _ = http
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await;
            })
        })
        .collect();
    // All five are reserved on Redis: the budget is full.
    let mut reserved = 0.0;
    for _ in 0..200 {
        reserved = spend(b, &id).await["reserved_usd"].as_f64().unwrap();
        if reserved >= budget_usd * 0.999 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        reserved >= budget_usd * 0.999,
        "reserved {reserved} of {budget_usd}"
    );
    drop(slow_replica); // SIGKILL
    let killed = Instant::now();
    for h in hanging {
        let _ = h.await;
    }
    let mut whole = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if spend(b, &id).await["reserved_usd"].as_f64() == Some(0.0) {
            whole = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = whole.expect("the dead replica's reservations lapse");
    eprintln!("reservations of the killed replica released {after:?} after SIGKILL (TTL 2 s)");
    // The whole budget is there for the living replica: five answers.
    let results = spread(&cluster, &key, &body, 5).await;
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "the budget is whole again: {results:?}"
    );
    assert_eq!(settled_spend(b, &id).await, 5 * one);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_at_once_seed_a_budget_from_the_ledger_exactly_once() {
    let Some(first) = Cluster::start(
        "replicas_starting_at_once_seed",
        Options {
            replicas: 1,
            ..Options::default()
        },
    )
    .await
    else {
        return;
    };
    let body = ask("what is the weather like");
    let c = &first.clients[0];
    let one = cost_of_one(c, &body).await;
    let (id, key) = c
        .key(json!({"name": "seeded", "budget_usd": 1.0, "budget_period": "total"}))
        .await;
    for _ in 0..3 {
        let (s, _, v) = c.chat(Some(&key), &body).await;
        assert_eq!(s, 200, "{v}");
    }
    let Cluster {
        redis,
        _cache,
        mut pg,
        mut replicas,
        clients,
    } = first;
    drop(clients);
    let mut only = replicas.pop().unwrap();
    tokio::task::spawn_blocking(move || assert!(only.terminate().success()))
        .await
        .unwrap();
    let url = pg.as_ref().unwrap().url.clone();
    assert_eq!(ledger_spend(&url, &id, 3 * one).await, 3 * one);
    // Redis loses everything (or is new): the counter must come from the ledger, once.
    assert_eq!(redis.command(&["FLUSHALL"]).as_deref(), Some("+OK"));
    let configs = (0..3).map(|_| config(&redis, None, "", "")).collect();
    let url2 = url.clone();
    let replicas = tokio::task::spawn_blocking(move || start_replicas(&url2, configs))
        .await
        .unwrap();
    let counter = format!("sy:{{{id}}}:b:0");
    let mut seeded = 0;
    for _ in 0..100 {
        seeded = redis.hget_i64(&counter, "spent");
        if seeded != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        seeded,
        3 * one,
        "seeded with the ledger's spend, not a multiple of it"
    );
    let seeders = replicas
        .iter()
        .filter(|r| {
            r.log_events().iter().any(|e| {
                e["message"] == "redis: seeded a budget counter from the ledger"
                    && e["key"] == id.as_str()
            })
        })
        .count();
    assert_eq!(seeders, 1, "exactly one replica seeded the counter");
    let clients: Vec<Client> = replicas.iter().map(|r| Client::new(r, ADMIN)).collect();
    for c in &clients {
        let (s, _, v) = c.chat(Some(&key), &body).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(settled_spend(&clients[0], &id).await, 6 * one);
    drop(clients);
    drop(replicas);
    if let Some(pg) = pg.take() {
        pg.drop().await;
    }
}
