//! Races on two hub processes: replay storms, a replica killed mid-load, limits and issuer ranges.

use super::*;
use api::auth::Role;
use base64::{Engine, engine::general_purpose::STANDARD};
use ed25519_dalek::SigningKey;
use entities::organization::OrganizationKind;
use hub_tests::{
    Backend, TestApp,
    checkout::{CARD_ID, CARD_SEED, Checkout, PAY, device_token},
    decode_global_id, on_both_backends, on_postgres,
};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use uuid::Uuid;

/// Sends `submission` from many tasks over both replicas; returns every final answer (retrying a
/// retryable CONFLICT, as a reader agent does).
async fn storm(
    checkout: &Checkout,
    urls: &[String],
    request: &Value,
    submissions: Vec<((String, String), String)>,
) -> Vec<Value> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client");
    let submissions = std::sync::Arc::new(std::sync::Mutex::new(submissions));
    let mut tasks = Vec::new();
    for task in 0..32 {
        let (client, url, token, request, submissions) = (
            client.clone(),
            urls[task % urls.len()].clone(),
            checkout.device_token(),
            request.clone(),
            submissions.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let next = submissions.lock().expect("lock").pop();
                let Some(((tap_token, signature), key)) = next else { break };
                let variables = json!({ "input": { "requestId": request["id"], "token": tap_token, "cardSignature": signature, "idempotencyKey": key } });
                let answer = loop {
                    let response = hub_tests::post_graphql(&client, &url, &token, PAY, variables.clone()).await;
                    if response.body.pointer("/errors/0/extensions/retryable").and_then(Value::as_bool) == Some(true) {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                    break response.data("/payWithOneTimeNumber").clone();
                };
                answers.push(answer);
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("task"));
    }
    answers
}

async fn replay_storms_on_two_replicas(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 10, |config| {
        config.payment_limits.card_velocity_count = 1_000
    })
    .await;
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];

    // One valid submission, 1,000 times, each with its own idempotency key: exactly one payment.
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    let answers = storm(
        &checkout,
        &urls,
        &request,
        (0..1_000)
            .map(|i| (tap.clone(), format!("storm-{i}")))
            .collect(),
    )
    .await;
    assert_eq!(answers.len(), 1_000);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["status"] == "AUTHORIZED")
            .count(),
        1,
        "exactly one authorization"
    );
    // Every other answer is a decline that names the replay, counted (not "all of none").
    let replays = answers
        .iter()
        .filter(|a| {
            a["status"] == "DECLINED"
                && (a["declineReason"] == "REQUEST_ALREADY_PAID"
                    || a["declineReason"] == "NUMBER_ALREADY_USED")
        })
        .count();
    assert_eq!(replays, 999, "replays are declined as replays");
    assert_eq!(payments_for(&checkout, &request).await, 1);

    // The same submission under one key, 1,000 times: one payment, every caller the same answer.
    let request = checkout.request(500).await;
    let tap = checkout.tap(&request);
    let answers = storm(
        &checkout,
        &urls,
        &request,
        (0..1_000)
            .map(|_| (tap.clone(), "one-key".to_owned()))
            .collect(),
    )
    .await;
    let first = &answers[0];
    assert_eq!(first["status"], "AUTHORIZED");
    assert!(
        answers.iter().all(|a| a == first),
        "every caller got the original answer"
    );
    assert_eq!(payments_for(&checkout, &request).await, 1);

    // A double tap (two numbers of one card) and a second card on the same request: one payment.
    let second_card = [0x65u8; 32];
    checkout
        .app
        .graphql(Some(&checkout.bank_admin), "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
            json!({ "input": { "cardId": Uuid::from_bytes([0x78; 16]).to_string(), "publicKey": STANDARD.encode(SigningKey::from_bytes(&second_card).verifying_key().as_bytes()), "lastFour": "5678" } }))
        .await
        .data("/registerCard");
    let request = checkout.request(500).await;
    let first_tap = checkout.tap(&request);
    let second_tap = checkout.tap(&request);
    let other_card = checkout.forge(&request, 60, |body, keys| {
        body.card_id = card_protocol::CardId::from_bytes([0x78; 16]);
        keys[1] = SigningKey::from_bytes(&second_card);
        body.card_public_key = keys[1].verifying_key().to_bytes();
    });
    let submissions = (0..300)
        .map(|i| match i % 3 {
            0 => (first_tap.clone(), format!("tap-a-{i}")),
            1 => (second_tap.clone(), format!("tap-b-{i}")),
            _ => (other_card.clone(), format!("card-b-{i}")),
        })
        .collect();
    let answers = storm(&checkout, &urls, &request, submissions).await;
    assert_eq!(
        answers
            .iter()
            .filter(|a| a["status"] == "AUTHORIZED")
            .count(),
        1,
        "one payment for the request"
    );
    let refused = answers
        .iter()
        .filter(|a| {
            a["status"] == "DECLINED"
                && [
                    "REQUEST_ALREADY_PAID",
                    "NUMBER_ALREADY_USED",
                    "SEQUENCE_REUSED",
                ]
                .contains(&a["declineReason"].as_str().unwrap_or_default())
        })
        .count();
    assert_eq!(
        refused, 299,
        "every other tap is declined as already paid or used"
    );
    assert_eq!(payments_for(&checkout, &request).await, 1);
    drop(replica);
    checkout.app.stop().await;
}
on_postgres!(replay_storm, replay_storms_on_two_replicas);

async fn a_killed_replica_loses_no_tap(backend: Backend) {
    let mut checkout = Checkout::new_with(backend, 1, |config| {
        let limits = &mut config.payment_limits;
        limits.card_velocity_count = 1_000;
        limits.card_velocity_sum_minor = 10_000_000;
    })
    .await;
    let mut replica = checkout.app.spawn_replica().await;
    // 40 taps, each on its own order's request.
    let mut taps = Vec::new();
    for i in 0..40 {
        let order = checkout.new_order(1).await;
        let request = checkout.request_for(&order, 100).await;
        let (token, signature) = checkout.tap(&request);
        let variables = json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": format!("crash-{i}") } });
        taps.push((request, variables));
    }
    // 8 readers submit to the replica; it is killed (-9) once a few answers are back.
    let client = reqwest::Client::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let queue = std::sync::Arc::new(std::sync::Mutex::new((0..taps.len()).collect::<Vec<_>>()));
    let taps = std::sync::Arc::new(taps);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, url, token, answered, queue, taps) = (
            client.clone(),
            replica.url.clone(),
            checkout.device_token(),
            answered.clone(),
            queue.clone(),
            taps.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let Some(index) = queue.lock().expect("lock").pop() else {
                    break;
                };
                let sent_at = std::time::Instant::now();
                let answer = submit(&client, &url, &token, &taps[index].1).await;
                if answer.is_some() {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                results.push((index, sent_at, answer));
            }
            results
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "no answers from the replica"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let killed_at = std::time::Instant::now();
    replica.kill();
    let mut outcomes: Vec<Option<Value>> = vec![None; taps.len()];
    let mut in_flight = 0;
    for worker in workers {
        for (index, sent_at, answer) in worker.await.expect("worker") {
            // Sent before the kill and never answered: the replica died with it in hand.
            if answer.is_none() && sent_at < killed_at {
                in_flight += 1;
            }
            outcomes[index] = answer;
        }
    }
    assert!(
        in_flight > 0,
        "the kill landed on an idle replica: no submission was in flight"
    );
    let unanswered: Vec<usize> = (0..taps.len()).filter(|i| outcomes[*i].is_none()).collect();
    assert!(
        !unanswered.is_empty(),
        "the kill landed after the load: nothing to recover"
    );
    // A new replica comes up; the reader resubmits what it had no answer for, with the same keys.
    let restarted = checkout.app.spawn_replica().await;
    let token = checkout.device_token();
    for index in &unanswered {
        outcomes[*index] = submit(&client, &restarted.url, &token, &taps[*index].1).await;
    }
    for (index, outcome) in outcomes.iter().enumerate() {
        let outcome = outcome.as_ref().expect("every tap has an answer now");
        assert_eq!(outcome["status"], "AUTHORIZED", "tap {index}: {outcome}");
        assert_eq!(
            payments_for(&checkout, &taps[index].0).await,
            1,
            "tap {index} paid exactly once"
        );
    }
    let payments = entities::payment::Entity::find()
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments");
    assert_eq!(
        payments.len(),
        taps.len(),
        "every tap accounted for exactly once"
    );
    drop(restarted);
    checkout.app.stop().await;
}
on_postgres!(crash_recovery, a_killed_replica_loses_no_tap);

/// One limit raced: `taps` submissions of `amount`, spread over `terminals` terminals and `cards`
/// cards, all sent at once to two replicas on one database.
struct LimitRace {
    terminals: usize,
    cards: usize,
    taps: usize,
    amount: i64,
    authorized: usize,
    reason: &'static str,
}

async fn race_one_limit(configure: impl FnOnce(&mut api::config::PaymentLimits), race: LimitRace) {
    let checkout = Checkout::new_with(Backend::Postgres, 1, |config| {
        let limits = &mut config.payment_limits;
        // Everything generous but the limit under test.
        hub_tests::checkout::generous_limits(limits);
        configure(limits);
    })
    .await;
    let replica = checkout.app.spawn_replica().await;
    let urls = [checkout.app.base_url.clone(), replica.url.clone()];
    let mut terminals = Vec::new();
    for t in 0..race.terminals {
        terminals.push(checkout.add_terminal(0xA0 + t as u8).await);
    }
    let mut cards = vec![(CARD_ID, SigningKey::from_bytes(&CARD_SEED))];
    for c in 1..race.cards {
        cards.push(checkout.add_card(0xC0 + c as u8).await);
    }
    let mut submissions = Vec::new();
    for i in 0..race.taps {
        let (terminal, terminal_key) = &terminals[i % terminals.len()];
        let (card_id, card_key) = &cards[i % cards.len()];
        let order = checkout.new_order(1).await;
        let request = checkout.request_at(&order, terminal, race.amount).await;
        let (token, signature) = checkout.forge(&request, i as u64, |body, keys| {
            body.card_id = *card_id;
            body.card_public_key = card_key.verifying_key().to_bytes();
            keys[1] = card_key.clone();
        });
        let variables = json!({ "input": { "requestId": request["id"], "token": token, "cardSignature": signature, "idempotencyKey": format!("race-{i}") } });
        let device_token = device_token(decode_global_id(terminal), terminal_key);
        submissions.push((urls[i % urls.len()].clone(), device_token, variables));
    }
    // Every submission in flight at once, half on each replica.
    let client = reqwest::Client::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(submissions.len()));
    let tasks: Vec<_> = submissions
        .into_iter()
        .map(|(url, token, variables)| {
            let (client, start) = (client.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                submit(&client, &url, &token, &variables).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("an answer"));
    }
    let authorized = outcomes
        .iter()
        .filter(|o| o["status"] == "AUTHORIZED")
        .count();
    assert_eq!(
        authorized, race.authorized,
        "{}: the limit held under concurrency: {outcomes:?}",
        race.reason
    );
    for outcome in outcomes.iter().filter(|o| o["status"] != "AUTHORIZED") {
        assert_eq!(outcome["declineReason"], race.reason, "{outcome}");
    }
    let payments = entities::payment::Entity::find()
        .all(&checkout.app.hub.state.db)
        .await
        .expect("payments");
    assert_eq!(payments.len(), race.authorized, "{}", race.reason);
    drop(replica);
    checkout.app.stop().await;
}

/// Each limit is decided under the card's and the device's locks: simultaneous taps on two replicas
/// authorize exactly as many payments as the limit allows.
async fn limits_hold_under_concurrency(_backend: Backend) {
    // Payments per card: 16 taps of one card at 8 terminals, 4 allowed.
    race_one_limit(
        |limits| limits.card_velocity_count = 4,
        LimitRace {
            terminals: 8,
            cards: 1,
            taps: 16,
            amount: 100,
            authorized: 4,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Sum per card: 16 taps of 10.00 at 8 terminals, 25.00 allowed.
    race_one_limit(
        |limits| limits.card_velocity_sum_minor = 2_500,
        LimitRace {
            terminals: 8,
            cards: 1,
            taps: 16,
            amount: 1_000,
            authorized: 2,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Distinct terminals per card: 12 terminals at once, 3 allowed.
    race_one_limit(
        |limits| limits.card_velocity_terminals = 3,
        LimitRace {
            terminals: 12,
            cards: 1,
            taps: 12,
            amount: 100,
            authorized: 3,
            reason: "CVM_REQUIRED",
        },
    )
    .await;
    // Value per device: 16 cards at one terminal, 25.00 allowed.
    race_one_limit(
        |limits| limits.device_cap_minor = 2_500,
        LimitRace {
            terminals: 1,
            cards: 16,
            taps: 16,
            amount: 1_000,
            authorized: 2,
            reason: "LIMIT_EXCEEDED",
        },
    )
    .await;
}
on_postgres!(limits_race, limits_hold_under_concurrency);

/// Two issuers registering overlapping prefixes at the same moment: exactly one wins each round, the
/// other gets CONFLICT (PostgreSQL: on two replicas, held by the exclusion constraint; SQLite: one
/// hub, held by its single writer).
async fn overlapping_prefixes_race(backend: Backend) {
    let app = TestApp::start(backend).await;
    let replica = match backend {
        Backend::Postgres => Some(app.spawn_replica().await),
        Backend::Sqlite => None,
    };
    let urls = [
        app.base_url.clone(),
        replica
            .as_ref()
            .map_or(app.base_url.clone(), |r| r.url.clone()),
    ];
    let mut admins = Vec::new();
    for name in ["Race Bank A", "Race Bank B"] {
        let bank = app
            .create_organization(name, OrganizationKind::FinancialProvider)
            .await;
        admins.push(app.token(bank, Role::Admin).await);
    }
    let register = "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }";
    let not_after = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    for round in 0..12u32 {
        // Bank A claims 5100rr, bank B the narrower 5100rr7: they overlap.
        let prefixes = [format!("5100{round:02}"), format!("5100{round:02}7")];
        let attempts: Vec<_> = (0..2)
            .map(|i| {
                let (client, url, token) = (app.client.clone(), urls[i].clone(), admins[i].clone());
                let key = SigningKey::from_bytes(&[0x30 + round as u8 * 2 + i as u8; 32]);
                let variables = json!({ "input": { "keyId": round + 1, "publicKey": STANDARD.encode(key.verifying_key().as_bytes()),
                    "prefix": prefixes[i], "notAfter": not_after } });
                tokio::spawn(async move {
                    hub_tests::post_graphql(&client, &url, &token, register, variables).await
                })
            })
            .collect();
        let mut codes = Vec::new();
        for attempt in attempts {
            let response = attempt.await.expect("task");
            codes.push(response.error_code().map(str::to_owned));
        }
        let won = codes.iter().filter(|code| code.is_none()).count();
        assert_eq!(
            won, 1,
            "round {round}: exactly one registration wins: {codes:?}"
        );
        assert!(
            codes.iter().flatten().all(|code| code == "CONFLICT"),
            "round {round}: the loser is told CONFLICT: {codes:?}"
        );
    }
    if backend == Backend::Postgres {
        // The database itself refuses an overlapping range of another issuer, whatever the code checks.
        use sea_orm::ConnectionTrait;
        let insert = |bank: &str, prefix: &str| {
            format!(
                "INSERT INTO issuer_key (id, owner_organization_id, key_id, public_key, prefix, \
                 not_after, status, version, created_at, updated_at) \
                 SELECT gen_random_uuid(), o.id, 99, '\\x00', '{prefix}', now(), 'ACTIVE', 1, now(), now() \
                 FROM organization o WHERE o.name = '{bank}'"
            )
        };
        let db = &app.hub.state.db;
        db.execute_unprepared(&insert("Race Bank A", "520000"))
            .await
            .expect("a fresh range");
        let refused = db
            .execute_unprepared(&insert("Race Bank B", "5200001"))
            .await;
        let err = refused.expect_err("an overlapping range is refused by the database");
        assert!(
            err.to_string()
                .contains("ex_issuer_key_number_range_disjoint"),
            "{err}"
        );
    }
    drop(replica);
    app.stop().await;
}
on_both_backends!(prefix_race, overlapping_prefixes_race);

/// One number signed by its issuer for two cards, tapped at two terminals at the same moment: the two
/// submissions share no lock (other device, other card), so both can find the number unused. The
/// number's unique key stops the later write; that submission is judged again and declined. Each
/// round: exactly one AUTHORIZED, the other NUMBER_ALREADY_USED, never an error.
async fn one_number_on_two_cards(_backend: Backend) {
    let checkout = Checkout::new_with(Backend::Postgres, 100, |config| {
        hub_tests::checkout::generous_limits(&mut config.payment_limits)
    })
    .await;
    let (terminal_b, key_b) = checkout.add_terminal(61).await;
    let device_b = decode_global_id(&terminal_b);
    let (card_b, card_key_b) = checkout.add_card(62).await;
    let terminal_a = hub_tests::encode_global_id(hub_tests::RecordKind::Device, checkout.device);
    let client = reqwest::Client::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..12u64 {
        let request_a = checkout
            .request_at(&checkout.new_order(1).await, &terminal_a, 100)
            .await;
        let request_b = checkout
            .request_at(&checkout.new_order(1).await, &terminal_b, 100)
            .await;
        let tap_a = checkout.forge(&request_a, round, |_, _| {});
        let tap_b = checkout.forge(&request_b, round, |body, keys| {
            keys[1] = card_key_b.clone();
            body.card_id = card_b;
            body.card_public_key = keys[1].verifying_key().to_bytes();
        });
        let submit = |request: &Value, (token, signature): (String, String), device: String| {
            let (client, url) = (client.clone(), checkout.app.base_url.clone());
            let variables = json!({ "input": { "requestId": request["id"], "token": token,
                "cardSignature": signature, "idempotencyKey": format!("same-number-{round}") } });
            tokio::spawn(async move {
                hub_tests::post_graphql(&client, &url, &device, PAY, variables).await
            })
        };
        let a = submit(&request_a, tap_a, checkout.device_token());
        let b = submit(&request_b, tap_b, device_token(device_b, &key_b));
        let mut answers = Vec::new();
        for answer in [a, b] {
            let answer = answer.await.expect("task");
            assert_eq!(answer.status, 200, "round {round}: {:?}", answer.body);
            answers.push(answer.data("/payWithOneTimeNumber").clone());
        }
        let mut seen: Vec<String> = answers
            .iter()
            .map(|answer| match answer["status"].as_str() {
                Some("AUTHORIZED") => "AUTHORIZED".to_owned(),
                _ => answer["declineReason"]
                    .as_str()
                    .unwrap_or("none")
                    .to_owned(),
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            ["AUTHORIZED", "NUMBER_ALREADY_USED"],
            "round {round}: {answers:?}"
        );
        for outcome in seen {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    assert_eq!(outcomes.get("AUTHORIZED"), Some(&12));
    checkout.app.stop().await;
}
on_postgres!(number_race, one_number_on_two_cards);
