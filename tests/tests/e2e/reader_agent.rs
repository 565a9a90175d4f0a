//! The reader agent on a checkout tablet, for real: `reader-agent` processes, a `virtual-card` process
//! behind the machine's pcscd (vpcd's first virtual reader), and the hub over HTTP and WebSocket.
//! These tests share pcscd's virtual reader and take turns (nextest group `pcsc`).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use card_protocol::token::Token;
use chrono::Utc;
use hub_tests::{
    Backend, Fingerprint, Subscriber,
    checkout::Checkout,
    on_both_backends,
    tablet::{Agent, VirtualCardProcess, assert_no_card_secrets, wait_until},
};
use reader_agent::{
    device::DeviceKey,
    ids,
    outbox::{Outbox, Tap},
};
use serde_json::{Value, json};
use uuid::Uuid;

const ORDER_PAID: &str = "query($id: ID!) { node(id: $id) { ... on Order { paidMinor } } }";
const REQUEST_STATUS: &str =
    "query($id: ID!) { node(id: $id) { ... on PaymentRequest { status } } }";

/// A checkout with a tablet: an agent whose key `reader-agent init` made, registered as a terminal of the
/// shop, talking to `hub_url`.
async fn tablet(checkout: &Checkout, hub_url: &str) -> Agent {
    let (mut agent, public_key) = Agent::init(hub_url);
    agent.device = checkout.add_terminal_with_key("Tablet", &public_key).await;
    agent
}

/// Opens a request for the checkout's order at the agent's terminal, and waits until the agent has it.
async fn open_at(checkout: &Checkout, agent: &Agent, amount: i64) -> Value {
    let request = checkout
        .request_at(&checkout.order, &agent.device, amount)
        .await;
    agent.wait_for_log("payment request open", 1).await;
    request
}

async fn paid_minor(checkout: &Checkout, order: &str) -> String {
    checkout
        .app
        .graphql(Some(&checkout.member), ORDER_PAID, json!({ "id": order }))
        .await
        .data("/node/paidMinor")
        .as_str()
        .expect("paidMinor")
        .to_owned()
}

async fn request_status(checkout: &Checkout, request: &Value) -> String {
    checkout
        .app
        .graphql(
            Some(&checkout.member),
            REQUEST_STATUS,
            json!({ "id": request["id"] }),
        )
        .await
        .data("/node/status")
        .as_str()
        .expect("status")
        .to_owned()
}

async fn agent_pays_a_request_end_to_end(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let mut agent = tablet(&checkout, &checkout.app.base_url).await;
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;
    let numbers_before = card.numbers_left();
    agent.start_following().await;

    // The checkout opens a request at the tablet's terminal; its screen follows the request live.
    let request = checkout
        .request_at(&checkout.order, &agent.device, 1_250)
        .await;
    let mut screen = Subscriber::acknowledged(&checkout.app.base_url, &checkout.member).await;
    screen
        .subscribe(
            "screen",
            "subscription($id: ID!) { paymentRequest(id: $id) { status } }",
            json!({ "id": request["id"] }),
        )
        .await;
    assert_eq!(screen.data().await["paymentRequest"]["status"], "OPEN");
    agent.wait_for_log("payment request open", 1).await;

    card.tap_and_wait().await;
    assert_eq!(
        screen.data().await["paymentRequest"]["status"],
        "PAID",
        "the screen sees the payment"
    );
    agent.wait_for_log("payment authorized", 1).await;
    assert_eq!(paid_minor(&checkout, &checkout.order).await, "1250");
    assert_eq!(card.numbers_left(), numbers_before - 1, "one number used");
    // The card saved its advanced state before answering: its file holds one number less.
    let saved = card_protocol::card::CardFile::load(&card.card_path).expect("card file");
    assert_eq!(saved.numbers.len() as u64, numbers_before - 1);
    assert!(agent.exited().is_none(), "the agent keeps running");
    assert_no_card_secrets(&agent.log(), &checkout.card.to_file());
    agent.kill();
    checkout.app.stop().await;
}
on_both_backends!(
    agent_pays_a_request_end_to_end,
    agent_pays_a_request_end_to_end
);

/// The hub goes away with three requests open; three taps wait sealed in the outbox; the agent is killed
/// and restarted; the hub comes back: each request is paid exactly once. Then the oldest entry comes back
/// (as if the agent had died after the hub answered and before it deleted the entry): resubmitted under
/// its key, it gets the first outcome and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_no_tap_and_charges_none_twice() {
    let checkout = Checkout::new(Backend::Postgres).await;
    let port = hub_tests::free_port();
    let mut replica = checkout.app.spawn_replica_on(port).await;
    let mut agent = tablet(&checkout, &replica.url).await;
    let card_file = checkout.card.to_file();
    let card = VirtualCardProcess::start(&card_file).await;
    agent.start_following().await;

    let mut orders = Vec::new();
    let mut requests = Vec::new();
    for _ in 0..3 {
        let order = checkout.new_order(1).await;
        requests.push(checkout.request_at(&order, &agent.device, 1_000).await);
        orders.push(order);
    }
    agent.wait_for_log("payment request open", 3).await;

    replica.kill();
    for _ in 0..3 {
        card.tap_and_wait().await;
    }
    wait_until("three sealed taps", Duration::from_secs(30), || {
        agent.outbox_entries().len() == 3
    })
    .await;
    // Sealed: neither the number's digits nor the token appear in any file.
    for text in card_file.numbers.iter().take(3) {
        let token = Token::from_base64url(text).expect("token");
        for entry in agent.outbox_entries() {
            let bytes = std::fs::read(&entry).expect("entry");
            assert!(!bytes.windows(16).any(|w| w == token.body.number.digits()));
            assert!(!bytes.windows(40).any(|w| w == &text.as_bytes()[..40]));
        }
    }
    let (code, listing) = agent.outbox_listing().await;
    assert_eq!(code, 0, "{listing}");
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert!(listing.contains("10.00 EUR"), "{listing}");

    // Killed between the taps and their submission: nothing happened at the hub yet.
    let replayed = agent.outbox_entries()[0].clone();
    let sealed_copy = std::fs::read(&replayed).expect("entry");
    agent.kill();
    for order in &orders {
        assert_eq!(paid_minor(&checkout, order).await, "0");
    }
    let before = checkout.app.fingerprint().await;

    let replica = checkout.app.spawn_replica_on(port).await;
    agent.start();
    wait_until("the outbox to empty", Duration::from_secs(60), || {
        agent.outbox_entries().is_empty()
    })
    .await;
    for (order, request) in orders.iter().zip(&requests) {
        assert_eq!(paid_minor(&checkout, order).await, "1000");
        assert_eq!(request_status(&checkout, request).await, "PAID");
    }
    let after = checkout.app.fingerprint().await;
    assert_eq!(after.rows("payment") - before.rows("payment"), 3);

    // The oldest entry is back while the agent runs: found by its next look at the outbox and
    // resubmitted under its key, it gets the first outcome and writes nothing.
    agent.wait_for_log("final answer", 3).await;
    let found_before = agent
        .log()
        .matches("submitting a tap found in the outbox")
        .count();
    // Put back whole (temporary file and rename), as the agent writes its own entries.
    let staging = replayed.with_extension("restore");
    std::fs::write(&staging, &sealed_copy).expect("staged entry");
    std::fs::rename(&staging, &replayed).expect("restore entry");
    agent
        .wait_for_log("submitting a tap found in the outbox", found_before + 1)
        .await;
    agent.wait_for_log("final answer", 4).await;
    assert!(agent.log().matches("status=AUTHORIZED").count() >= 4);
    wait_until("the outbox to empty", Duration::from_secs(30), || {
        agent.outbox_entries().is_empty()
    })
    .await;
    assert_eq!(
        checkout.app.fingerprint().await,
        after,
        "nothing charged twice"
    );
    assert_no_card_secrets(&agent.log(), &card_file);
    agent.kill();
    drop(replica);
    checkout.app.stop().await;
}

/// The request's fields as the card signs them, from what the hub showed the member who opened it.
fn sealed_tap(checkout: &mut Checkout, request: &Value) -> Tap {
    let (token, card_signature) = checkout.tap(request);
    let id = Uuid::parse_str(
        request["signingFields"]["requestId"]
            .as_str()
            .expect("requestId"),
    )
    .expect("uuid");
    Tap {
        request_id: id,
        request: ids::global_id(ids::PAYMENT_REQUEST, id),
        token,
        card_signature,
        idempotency_key: Uuid::new_v4().to_string(),
        amount_minor: 500,
        currency: "EUR".into(),
        tapped_at: Utc::now(),
        acceptance_deadline: Utc::now() + chrono::Duration::minutes(15),
    }
}

fn agent_outbox(agent: &Agent) -> Outbox {
    let key = DeviceKey::load(&agent.state_dir.path().join("device.key")).expect("device key");
    let device = ids::parse(ids::DEVICE, &agent.device).expect("device id");
    Outbox::open(&agent.outbox_dir(), device, &key.outbox_key()).expect("outbox")
}

async fn assert_unchanged(checkout: &Checkout, before: &Fingerprint, case: &str) {
    assert_eq!(
        &checkout.app.fingerprint().await,
        before,
        "{case} changed the database"
    );
}

/// The global ID of a request as `requestPayment` answered it.
fn id(request: &Value) -> &str {
    request["id"].as_str().expect("request id")
}

/// Every way a tap can fail gives its own exit code, a clear message and no payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taps_that_cannot_pay_say_why_and_change_nothing() {
    let mut checkout = Checkout::new(Backend::Postgres).await;
    let mut agent = tablet(&checkout, &checkout.app.base_url).await;

    // A sealed tap whose file was altered: set aside, never submitted. The same tap unaltered pays.
    let tampered_request = checkout
        .request_at(&checkout.new_order(1).await, &agent.device, 500)
        .await;
    let tap = sealed_tap(&mut checkout, &tampered_request);
    let outbox = agent_outbox(&agent);
    outbox.store(&tap).expect("sealed");
    let entry = agent.outbox_entries().pop().expect("entry");
    let mut bytes = std::fs::read(&entry).expect("entry");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&entry, &bytes).expect("tamper");
    let before = checkout.app.fingerprint().await;
    agent
        .pay_refused(id(&tampered_request), "1s", None, (40, "OUTBOX_DAMAGED"))
        .await;
    assert!(agent.outbox_entries().is_empty(), "set aside");
    let (code, listing) = agent.outbox_listing().await;
    assert_eq!(code, 40, "{listing}");
    assert!(listing.contains("REJECTED"), "{listing}");
    assert_unchanged(&checkout, &before, "a tampered outbox entry").await;
    // A sealed tap the hub refuses for good (a malformed token: VALIDATION): kept in refused/, named
    // with the code, never retried and never deleted.
    let refused_request = checkout
        .request_at(&checkout.new_order(1).await, &agent.device, 500)
        .await;
    let mut malformed = sealed_tap(&mut checkout, &refused_request);
    malformed.token = "AAAA".into();
    outbox.store(&malformed).expect("sealed");
    let before = checkout.app.fingerprint().await;
    let report = agent
        .pay_refused(id(&refused_request), "1s", None, (13, "HUB_REFUSED"))
        .await;
    assert!(
        report["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("VALIDATION")),
        "{report}"
    );
    assert!(agent.outbox_entries().is_empty());
    let refused = agent.outbox_dir().join("refused");
    let kept: Vec<_> = std::fs::read_dir(&refused)
        .expect("refused/")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].ends_with(".tap.VALIDATION"), "{kept:?}");
    let (_, listing) = agent.outbox_listing().await;
    assert!(listing.contains("REFUSED"), "{listing}");
    assert_unchanged(&checkout, &before, "a tap the hub refused for good").await;

    let untouched_request = checkout
        .request_at(&checkout.new_order(1).await, &agent.device, 500)
        .await;
    outbox
        .store(&sealed_tap(&mut checkout, &untouched_request))
        .expect("sealed");
    let (code, report) = agent.pay(id(&untouched_request), "1s", None).await;
    assert_eq!(
        (code, &report["status"]),
        (0, &json!("AUTHORIZED")),
        "{report}"
    );

    // From here the card is the virtual one, holding what the in-process card has not used.
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;
    let numbers = card.numbers_left();
    let request = checkout
        .request_at(&checkout.new_order(1).await, &agent.device, 500)
        .await;
    let before = checkout.app.fingerprint().await;

    // Pulled away mid-exchange.
    let report = agent
        .pay_refused(
            id(&request),
            "20s",
            Some((&card, "tear")),
            (22, "CARD_REMOVED"),
        )
        .await;
    assert!(
        report["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("tap again")),
        "{report}"
    );
    assert_eq!(card.numbers_left(), numbers, "no number used");
    assert!(agent.outbox_entries().is_empty());
    card.wait_off_reader().await;

    // No card within the wait: one left lying on the reader before the agent asked for a tap (it must
    // not pay a request it was never presented for), or none at all.
    card.command("insert");
    tokio::time::sleep(Duration::from_millis(1_500)).await; // pcscd sees it
    agent
        .pay_refused(id(&request), "2s", None, (21, "NO_CARD"))
        .await;
    assert_eq!(card.numbers_left(), numbers, "the lying card was not asked");
    card.command("remove");
    card.wait_off_reader().await;
    agent
        .pay_refused(id(&request), "1s", None, (21, "NO_CARD"))
        .await;

    // A request that is not this terminal's (or does not exist), and one already paid.
    let stranger = ids::global_id(ids::PAYMENT_REQUEST, Uuid::new_v4());
    agent
        .pay_refused(&stranger, "1s", None, (31, "REQUEST_NOT_FOUND"))
        .await;
    agent
        .pay_refused(id(&untouched_request), "1s", None, (32, "REQUEST_NOT_OPEN"))
        .await;
    drop(card);

    // A card with no numbers left, and a card without the payment application (a transit card).
    let mut empty = checkout.card.to_file();
    empty.numbers.clear();
    let card = VirtualCardProcess::start(&empty).await;
    agent
        .pay_refused(
            id(&request),
            "20s",
            Some((&card, "insert")),
            (24, "CARD_OUT_OF_NUMBERS"),
        )
        .await;
    card.command("remove");
    drop(card);
    let card = VirtualCardProcess::start_foreign(&checkout.card.to_file()).await;
    agent
        .pay_refused(
            id(&request),
            "20s",
            Some((&card, "insert")),
            (23, "UNKNOWN_CARD_APPLICATION"),
        )
        .await;
    card.command("remove");
    drop(card);
    assert_unchanged(&checkout, &before, "taps that could not pay").await;

    // A device revoked while its agent runs: the hub closes the connection (4403 at its next check),
    // the agent reconnects with a fresh token, is refused at connection_init and stops with exit 30;
    // `pay` is refused before it asks for a card.
    agent.start_following().await;
    checkout.revoke_device(&agent.device).await;
    let before = checkout.app.fingerprint().await;
    assert_eq!(agent.wait_for_exit().await, 30, "{}", agent.log());
    assert!(
        agent.log().contains("closed by the hub (4403"),
        "closed on an open connection first: {}",
        agent.log()
    );
    agent
        .pay_refused(id(&request), "5s", None, (30, "DEVICE_REFUSED"))
        .await;
    assert_unchanged(&checkout, &before, "a revoked device").await;
    checkout.app.stop().await;
}

/// A tap after the request's tap deadline is refused by the agent itself: `pay` says so, and the
/// running agent stops waiting at the deadline and does not ask a card presented later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_tap_is_refused_locally() {
    let checkout = Checkout::new_with(Backend::Postgres, 3, |config| {
        config.payment_limits.tap_deadline_secs = 2;
    })
    .await;
    let mut agent = tablet(&checkout, &checkout.app.base_url).await;
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;
    agent.start_following().await;
    let request = open_at(&checkout, &agent, 1_000).await;
    agent.wait_for_log("TAP_DEADLINE_PASSED", 1).await;
    let before = checkout.app.fingerprint().await;
    card.tap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(card.status()["payments"], 0, "the card was not asked");
    agent.kill();
    card.command("remove");
    card.wait_off_reader().await;

    let (code, report) = agent
        .pay(
            request["id"].as_str().expect("id"),
            "5s",
            Some((&card, "tap")),
        )
        .await;
    assert_eq!(
        (code, &report["error"]["code"]),
        (33, &json!("TAP_DEADLINE_PASSED")),
        "{report}"
    );
    assert_eq!(card.status()["payments"], 0, "the card was not asked");
    assert_unchanged(&checkout, &before, "a late tap").await;
    card.command("remove");
    drop(card);
    checkout.app.stop().await;
}

/// `init` writes a private key once and prints its public half as `registerDevice` takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_makes_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let (agent, public_key) = Agent::init("http://127.0.0.1:9");
    let decoded = STANDARD.decode(&public_key).expect("standard base64");
    assert_eq!(decoded.len(), 32, "an ed25519 public key");
    let key_path = agent.state_dir.path().join("device.key");
    let mode = std::fs::metadata(&key_path)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&key_path).expect("key");
    let again = std::process::Command::new(hub_tests::workspace_binary("reader-agent"))
        .arg("--state-dir")
        .arg(agent.state_dir.path())
        .arg("init")
        .output()
        .expect("runs");
    assert!(!again.status.success(), "an existing key is never replaced");
    assert_eq!(std::fs::read(&key_path).expect("key"), before);
}

/// A declined tap leaves the request open (a decline consumes nothing): the running agent takes another
/// card for it, which pays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_decline_another_card_pays() {
    use card_protocol::{
        CardId,
        issuer::{Issuance, IssuerFile},
        number::PrefixRange,
        token::{Channel, DomainRestrictions},
    };
    let checkout = Checkout::new(Backend::Postgres).await;
    let mut agent = tablet(&checkout, &checkout.app.base_url).await;
    // A card with numbers the bank's key signed, but which the bank never registered: CARD_UNKNOWN.
    let now = Utc::now().timestamp() as u64;
    let mut issuer = IssuerFile::new(
        checkout.bank.into(),
        1,
        hub_tests::checkout::ISSUER_SEED,
        PrefixRange::new("400012").expect("prefix"),
        now + 300 * 86_400,
    );
    issuer.next_account = 10_000; // numbers the fixture's card does not hold
    let unregistered = issuer
        .personalize(
            CardId::from_bytes([0x55; 16]),
            [0x56; 32],
            &Issuance {
                count: 4,
                restrictions: DomainRestrictions {
                    max_amount_minor: 5_000,
                    currency: *b"EUR",
                    merchant: None,
                    channel: Channel::ContactlessPresent,
                },
                not_after: now + 30 * 86_400,
            },
        )
        .expect("personalized");
    agent.start_following().await;
    let request = open_at(&checkout, &agent, 1_000).await;

    let stranger = VirtualCardProcess::start(&unregistered).await;
    stranger.tap_and_wait().await;
    agent.wait_for_log("payment declined", 1).await;
    assert!(agent.log().contains("CARD_UNKNOWN"), "{}", agent.log());
    assert_eq!(request_status(&checkout, &request).await, "OPEN");
    drop(stranger);

    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;
    card.tap_and_wait().await;
    agent.wait_for_log("payment authorized", 1).await;
    assert_eq!(paid_minor(&checkout, &checkout.order).await, "1000");
    assert_eq!(request_status(&checkout, &request).await, "PAID");
    agent.kill();
    checkout.app.stop().await;
}

/// A request cancelled while the agent could not reach the hub is dropped once it reconnects (the hub
/// lists what is open now), and no card is asked for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_during_an_outage_is_dropped() {
    let checkout = Checkout::new(Backend::Postgres).await;
    let port = hub_tests::free_port();
    let mut replica = checkout.app.spawn_replica_on(port).await;
    let mut agent = tablet(&checkout, &replica.url).await;
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;
    agent.start_following().await;
    let request = open_at(&checkout, &agent, 1_000).await;

    replica.kill();
    checkout
        .app
        .graphql(
            Some(&checkout.member),
            "mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { status } } }",
            json!({ "id": request["id"] }),
        )
        .await
        .data("/cancelPaymentRequest");
    let replica = checkout.app.spawn_replica_on(port).await;
    agent
        .wait_for_log("requests closed while the agent was away are dropped", 1)
        .await;
    agent.wait_for_log("no tap for this request", 1).await;
    card.tap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        card.status()["payments"],
        0,
        "no card asked for a cancelled request"
    );
    assert_eq!(request_status(&checkout, &request).await, "CANCELLED");
    agent.kill();
    card.command("remove");
    drop(replica);
    checkout.app.stop().await;
}
