use super::*;

/// The HTTP status the edge gives a key error.
fn status(e: &Error) -> u16 {
    crate::api::ApiError::from(e.clone()).status.as_u16()
}

#[test]
fn periods_start_at_utc_day_and_month_boundaries() {
    // 2026-11-22T15:30:00Z
    let t = 1_795_361_400_000;
    assert_eq!(Period::Total.start(t), 0);
    assert_eq!(Period::Day.start(t), 1_795_305_600_000); // 2026-11-22T00:00Z
    assert_eq!(Period::Month.start(t), 1_793_491_200_000); // 2026-11-01T00:00Z
    // 2024-02-29T23:59:59Z → February 1st; leap years handled.
    assert_eq!(Period::Month.start(1_709_251_199_000), 1_706_745_600_000);
}

#[test]
fn secrets_are_random_and_only_their_hash_is_kept() {
    let a = new_secret().unwrap();
    let b = new_secret().unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("sk-sy-") && a.len() == 6 + 64);
    assert_eq!(hash_secret(&a).len(), 64);
    assert_ne!(hash_secret(&a), hash_secret(&b));
}

#[tokio::test]
async fn concurrent_reservations_overspend_by_at_most_one_estimate() {
    let keys = Keys::in_memory(AuthMode::Keys, None);
    let (k, _) = keys
        .create(NewKey {
            name: "t".into(),
            budget_usd: Some(0.001),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let estimate = usd_to_pico(0.0003);
    let now = now_ms();
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..50 {
        match k.reserve(now, estimate, 10) {
            Ok(r) => held.push(r),
            // Nothing is spent yet: reservations alone stand in the way (not a 402).
            Err(Refusal::Reserved(_)) => refused += 1,
            Err(Refusal::Final(e)) => panic!("{e}"),
        }
    }
    // 0.3 + 0.3 + 0.3 < 1.0 ≤ 1.2: four admitted, the rest refused.
    assert_eq!(held.len(), 4);
    assert_eq!(refused, 46);
    for r in held {
        r.settle(estimate, 10);
    }
    let u = k.usage(now);
    assert_eq!(u.spent_picousd, 4 * estimate);
    assert!(u.spent_picousd <= usd_to_pico(0.001) + estimate);
    // Spent now: refused for good, with 402.
    match k.reserve(now, 1, 1) {
        Err(Refusal::Final(e)) => assert_eq!(status(&e), 402),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_waits_for_reservations_to_settle_then_gets_429_not_402() {
    let keys = Keys::in_memory(AuthMode::Keys, None);
    let (k, _) = keys
        .create(NewKey {
            name: "w".into(),
            budget_usd: Some(0.001),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let big = usd_to_pico(0.0009);
    let held = k.reserve(now_ms(), big, 1).unwrap();
    // The budget is reserved, not spent: a waiter is admitted when the reservation settles low.
    let waiter = {
        let k = k.clone();
        tokio::spawn(async move {
            k.reserve_waiting(usd_to_pico(0.0001), 1, Duration::from_secs(2))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.settle(usd_to_pico(0.0002), 1);
    let admitted = waiter.await.unwrap().unwrap();
    admitted.settle(usd_to_pico(0.0001), 1);
    // Reserved again and never settled within the wait: 429 with retry-after.
    let _held = k.reserve(now_ms(), big, 1).unwrap();
    let e = k
        .reserve_waiting(usd_to_pico(0.0001), 1, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(status(&e), 429);
    assert!(e.retry_after().is_some());
}

#[tokio::test]
async fn revoked_keys_are_refused_and_the_mode_never_changes() {
    let keys = Keys::in_memory(AuthMode::Keys, None);
    assert!(
        keys.authenticate(None).await.is_err(),
        "keys mode with no key yet"
    );
    let (k, secret) = keys.create(NewKey::default_named("a")).await.unwrap();
    assert!(keys.authenticate(None).await.is_err());
    assert!(matches!(
        keys.authenticate(Some(&secret)).await,
        Ok(Auth::Key(_))
    ));
    assert!(keys.authenticate(Some("sk-sy-nope")).await.is_err());
    assert!(keys.revoke(k.id()).await.unwrap());
    assert!(!keys.revoke(k.id()).await.unwrap());
    let e = keys.authenticate(Some(&secret)).await.err().unwrap();
    assert_eq!(status(&e), 401);
    assert!(e.to_string().contains("revoked"));
    // No active key left: the gateway stays closed.
    assert!(keys.authenticate(None).await.is_err());
    assert!(keys.authenticate(Some("sk-sy-nope")).await.is_err());
    // Open mode: no key needed, and a key held in memory still brings its limits.
    let open = Keys::in_memory(AuthMode::Open, None);
    assert!(matches!(open.authenticate(None).await, Ok(Auth::Open)));
    let (_, s) = open.create(NewKey::default_named("b")).await.unwrap();
    assert!(matches!(
        open.authenticate(Some(&s)).await,
        Ok(Auth::Key(_))
    ));
    assert!(matches!(
        open.authenticate(Some("sk-anything")).await,
        Ok(Auth::Open)
    ));
}

#[tokio::test]
async fn rpm_and_tpm_windows_refuse_with_retry_after() {
    let keys = Keys::in_memory(AuthMode::Keys, None);
    let (k, _) = keys
        .create(NewKey {
            name: "r".into(),
            rpm: Some(2),
            tpm: Some(100),
            ..NewKey::default()
        })
        .await
        .unwrap();
    let now = now_ms();
    let s = now.div_euclid(1000);
    let refused = |r: Result<Reservation, Refusal>| match r {
        Err(Refusal::Final(e)) => e,
        other => panic!("{other:?}"),
    };
    // Admission counts nothing; each upstream call (a reservation) counts one request.
    k.admit(s).unwrap();
    k.admit(s).unwrap();
    k.admit(s).unwrap();
    // Tokens: 80 reserved, 30 more would pass 100.
    let r = k.reserve(now, 0, 80).unwrap();
    assert_eq!(status(&refused(k.reserve(now, 0, 30))), 429);
    // The answer used only 50: the reservation shrinks to that.
    r.settle(0, 50);
    let second = k.reserve(now, 0, 30).unwrap();
    second.settle(0, 30);
    // Two upstream calls: the third is over the RPM, and so is a new request's admission.
    let e = refused(k.reserve(now, 0, 1));
    assert_eq!(status(&e), 429);
    assert!(e.retry_after().unwrap() >= Duration::from_secs(1));
    assert_eq!(status(&k.admit(s).unwrap_err()), 429);
}

#[test]
fn admin_key_is_checked_and_disabled_without_one() {
    let keys = Keys::in_memory(AuthMode::Keys, None);
    assert_eq!(status(&keys.check_admin(Some("x"), None).unwrap_err()), 403);
    let keys = Keys::in_memory(AuthMode::Keys, Some("admin-secret-123456"));
    assert!(keys.check_admin(Some("admin-secret-123456"), None).is_ok());
    assert_eq!(
        status(&keys.check_admin(Some("wrong"), None).unwrap_err()),
        401
    );
    assert_eq!(status(&keys.check_admin(None, None).unwrap_err()), 401);
    // Failures are limited per client address; another address is not affected.
    let peer = Some(std::net::IpAddr::from([10, 0, 0, 1]));
    for _ in 0..ADMIN_FAILURES_PER_MINUTE {
        assert_eq!(
            status(&keys.check_admin(Some("guess"), peer).unwrap_err()),
            401
        );
    }
    let e = keys
        .check_admin(Some("admin-secret-123456"), peer)
        .unwrap_err();
    assert_eq!(status(&e), 429);
    let other = Some(std::net::IpAddr::from([10, 0, 0, 2]));
    assert!(keys.check_admin(Some("admin-secret-123456"), other).is_ok());
}

#[tokio::test]
async fn replicas_sharing_a_store_see_each_others_keys_and_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/keys.db", dir.path().display());
    let a = Keys::load(
        Store::connect(&url).await.unwrap(),
        AuthMode::Keys,
        None,
        None,
    )
    .await
    .unwrap();
    let b = Keys::load(
        Store::connect(&url).await.unwrap(),
        AuthMode::Keys,
        None,
        None,
    )
    .await
    .unwrap();
    let (k, secret) = a.create(NewKey::default_named("shared")).await.unwrap();
    // B has not seen it yet, but looks it up in the store on first use.
    assert!(matches!(
        b.authenticate(Some(&secret)).await,
        Ok(Auth::Key(_))
    ));
    assert_eq!(b.store_lookups(), 1);
    assert!(a.revoke(k.id()).await.unwrap());
    b.refresh().await.unwrap();
    assert_eq!(
        b.authenticate(Some(&secret))
            .await
            .err()
            .map(|e| status(&e))
            .unwrap(),
        401
    );
    // A third replica starting now loads it as revoked.
    let c = Keys::load(
        Store::connect(&url).await.unwrap(),
        AuthMode::Keys,
        None,
        None,
    )
    .await
    .unwrap();
    assert!(c.get(k.id()).unwrap().is_revoked());
    // An unknown key is looked up once, then remembered as unknown.
    for _ in 0..5 {
        assert!(c.authenticate(Some("sk-sy-unknown")).await.is_err());
    }
    assert_eq!(c.store_lookups(), 1);
}
