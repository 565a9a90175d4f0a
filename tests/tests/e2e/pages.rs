//! The checkout and operations pages in a real browser (headless Chromium through chromedriver),
//! against the real hub, with the reader agent and the virtual card behind pcscd paying for real.
//! They share pcscd's virtual reader with the reader-agent tests and take turns (nextest group `pcsc`).

use api::auth::Role;
use hub_tests::{
    Backend, TestApp,
    browser::Browser,
    checkout::Checkout,
    on_both_backends,
    tablet::{Agent, VirtualCardProcess},
};
use serde_json::{Value, json};

const SCREENSHOTS: &str = env!("CARGO_TARGET_TMPDIR");
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const CREATE_PRODUCT: &str =
    "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }";

/// The shop's catalogue beside the fixture's coffee (10.00): a croissant and a product whose name is
/// markup.
async fn stock(app: &TestApp, member: &str) {
    for (sku, name, price) in [("CROISSANT", "Croissant", 250), ("XSS", XSS_NAME, 100)] {
        app.graphql(
            Some(member),
            CREATE_PRODUCT,
            json!({ "input": { "sku": sku, "name": name, "priceMinor": price, "currency": "EUR" } }),
        )
        .await
        .data("/createProduct/product/id");
    }
}

/// A tablet: a reader agent registered as the shop's terminal "Tablet", following `hub_url`.
async fn tablet(checkout: &Checkout, hub_url: &str) -> Agent {
    let (mut agent, public_key) = Agent::init(hub_url);
    agent.device = checkout.add_terminal_with_key("Tablet", &public_key).await;
    agent.start_following().await;
    agent
}

/// Searches the catalogue for `name` and adds the first match to the cart.
async fn add(browser: &Browser, name: &str) {
    browser.type_into("#search", name).await;
    browser.click("#search-button").await;
    browser
        .wait_text(
            "#products li .name",
            &format!("{name} in the results"),
            |text| text == name,
        )
        .await;
    browser.click("#products li .add").await;
}

/// Rings up coffee and croissant (12.50) at the tablet and charges: the page asks for the card.
async fn ring_up(browser: &Browser) {
    browser.select_label("#terminal", "Tablet (Shop)").await;
    add(browser, "Coffee").await;
    add(browser, "Croissant").await;
    assert_eq!(browser.text("#total").await.as_deref(), Some("€12.50"));
    browser.click("#charge").await;
    browser
        .wait_text("#pay-status", "the request for a tap", |text| {
            text == "Tap the card on the reader"
        })
        .await;
    assert_eq!(browser.text("#pay-amount").await.as_deref(), Some("€12.50"));
}

/// Switches the browser to window `handle`.
async fn to_window(browser: &Browser, handle: &fantoccini::wd::WindowHandle) {
    browser
        .client
        .switch_to_window(handle.clone())
        .await
        .expect("switch window");
}

/// The feed's rows as (position, event type), newest first.
async fn feed(browser: &Browser) -> Vec<(i64, String)> {
    let rows = browser
        .eval(
            "return [...document.querySelectorAll('#feed tr')].map(r => [Number(r.dataset.position), r.dataset.type]);",
            vec![],
        )
        .await;
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row[0].as_i64().expect("position"),
                row[1].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

/// Sign in, find two products, place the order, open the request; the virtual card is tapped through
/// the running reader agent and the page shows AUTHORIZED without a reload, while the operations page in
/// a second tab shows the payment. Markup in a product's name stays text.
async fn checkout_in_the_browser(backend: Backend) {
    let checkout = Checkout::new(backend).await;
    let app = &checkout.app;
    stock(app, &checkout.member).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let agent = tablet(&checkout, &app.base_url).await;
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;

    // The pages are the hub's own, under a strict policy.
    for path in ["/checkout", "/ops", "/assets/checkout.js"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .expect("page");
        assert_eq!(response.status(), 200, "{path}");
        let policy = response.headers()["content-security-policy"]
            .to_str()
            .expect("ascii");
        assert!(
            policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
            "{path}: {policy}"
        );
        assert!(policy.contains("default-src 'none'"), "{path}: {policy}");
    }
    // Every other answer too, a missing asset and an unknown page included.
    for path in [
        "/assets/../Cargo.toml",
        "/assets/nothing.js",
        "/checkout/",
        "/graphql",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .expect("answer");
        assert_ne!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(
            headers
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok()),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(
            headers
                .get("x-content-type-options")
                .and_then(|v| v.to_str().ok()),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            headers.get("x-frame-options").and_then(|v| v.to_str().ok()),
            Some("DENY"),
            "{path}"
        );
    }

    let browser = Browser::start(1024, 768).await;
    // The operations page first, in its own tab, so that it is live when the payment happens.
    browser.goto(&format!("{}/ops", app.base_url)).await;
    browser.sign_in(&admin).await;
    browser
        .wait_text("#connection", "the live feed", |text| text == "Live")
        .await;
    let ops = browser.client.window().await.expect("window");
    let tab = browser
        .client
        .new_window(true)
        .await
        .expect("new tab")
        .handle;
    to_window(&browser, &tab).await;

    browser.goto(&format!("{}/checkout", app.base_url)).await;
    browser.sign_in(&checkout.member).await;
    browser
        .wait_text("#connection", "the live connection", |text| text == "Live")
        .await;

    // Markup in a name is shown as the text it is, and runs nothing.
    browser.type_into("#search", "<img").await;
    browser.click("#search-button").await;
    browser
        .wait_text("#products li .name", "the markup-named product", |text| {
            text == XSS_NAME
        })
        .await;
    assert_eq!(
        browser
            .eval(
                "return document.querySelectorAll('#products img, img').length;",
                vec![]
            )
            .await,
        json!(0),
        "no element was made from the name"
    );
    // And the policy is enforced, not only sent: markup a bug might let in runs no inline handler.
    browser
        .eval(
            "window.__blocked = []; window.__ran = false;\
             document.addEventListener('securitypolicyviolation', e => window.__blocked.push(e.effectiveDirective));\
             const probe = document.createElement('div'); probe.id = 'csp-probe';\
             probe.innerHTML = '<img src=\"/assets/none.png\" onerror=\"window.__ran = true\">';\
             document.body.append(probe); return true;",
            vec![],
        )
        .await;
    browser
        .wait_until(
            "the policy refusing the inline handler",
            "return window.__blocked.some(d => d.startsWith('script-src'));",
            vec![],
        )
        .await;
    assert_eq!(
        browser
            .eval(
                "document.getElementById('csp-probe').remove(); return window.__ran;",
                vec![]
            )
            .await,
        json!(false),
        "an inline handler ran despite the policy"
    );

    ring_up(&browser).await;
    agent.wait_for_log("payment request open", 1).await;
    browser
        .screenshot(SCREENSHOTS, &format!("checkout-tap-{backend:?}"))
        .await;
    card.tap_and_wait().await;
    let status = browser
        .wait_text("#pay-status", "the authorization", |text| {
            text.starts_with("AUTHORIZED")
        })
        .await;
    assert_eq!(status, "AUTHORIZED · card •••• 1234");
    browser
        .screenshot(SCREENSHOTS, &format!("checkout-authorized-{backend:?}"))
        .await;

    // The operations tab has the payment, its amount and the hour's figures.
    to_window(&browser, &ops).await;
    browser
        .wait_text(
            "#feed tr[data-type='payment.authorized'] .detail",
            "the payment in the feed",
            |text| text == "€12.50 · •••• 1234",
        )
        .await;
    browser
        .wait_until(
            "the payment in the hour's figures",
            "return document.getElementById('approval').dataset.authorized === '1';",
            vec![],
        )
        .await;
    assert_eq!(
        browser.text("#approval").await.as_deref(),
        Some("1 authorized, 0 declined: 100.0% approved")
    );
    browser
        .screenshot(SCREENSHOTS, &format!("ops-{backend:?}"))
        .await;

    // At phone size the checkout fits its width.
    to_window(&browser, &tab).await;
    browser
        .client
        .set_window_size(390, 844)
        .await
        .expect("resize");
    browser.click("#new-sale").await;
    browser
        .wait_until(
            "the page to fit a phone's width",
            "return document.documentElement.scrollWidth <= window.innerWidth;",
            vec![],
        )
        .await;
    browser
        .screenshot(SCREENSHOTS, &format!("checkout-phone-{backend:?}"))
        .await;
    browser.stop().await;
    drop(card);
    drop(agent);
    checkout.app.stop().await;
}
on_both_backends!(the_whole_checkout_in_a_browser, checkout_in_the_browser);

/// A blocked card's decline is shown with its reason; then the hub goes away. The operations page
/// follows one replica, the checkout and its reader another: both pages say they are reconnecting, the
/// card is tapped meanwhile (the agent keeps the tap), the checkout's replica comes back first and the
/// payment is made while the operations page is still cut off; when its replica is back too, its feed
/// resumes from its cursor and shows exactly the events it missed, none twice, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_and_an_outage_in_the_browser() {
    let checkout = Checkout::new(Backend::Postgres).await;
    let app = &checkout.app;
    stock(app, &checkout.member).await;
    let admin = app.token(app.retailer_id, Role::Admin).await;
    let (ops_port, till_port) = (hub_tests::free_port(), hub_tests::free_port());
    let mut ops_replica = app.spawn_replica_on(ops_port).await;
    let mut till_replica = app.spawn_replica_on(till_port).await;
    let agent = tablet(&checkout, &till_replica.url).await;
    let card = VirtualCardProcess::start(&checkout.card.to_file()).await;

    let browser = Browser::start(1024, 768).await;
    browser.goto(&format!("{}/ops", ops_replica.url)).await;
    browser.sign_in(&admin).await;
    browser
        .wait_text("#connection", "the live feed", |text| text == "Live")
        .await;
    let ops = browser.client.window().await.expect("window");
    let tab = browser
        .client
        .new_window(true)
        .await
        .expect("new tab")
        .handle;
    to_window(&browser, &tab).await;
    browser
        .goto(&format!("{}/checkout", till_replica.url))
        .await;
    browser.sign_in(&checkout.member).await;
    browser
        .wait_text("#connection", "the live connection", |text| text == "Live")
        .await;

    // The bank blocks the card: the tap is declined, and the staff are told why and what to do.
    let step = |mutation: &'static str| {
        let (app, bank, card) = (
            &checkout.app,
            checkout.bank_admin.clone(),
            checkout.card_gid.clone(),
        );
        async move {
            app.graphql(Some(&bank), &format!("mutation($id: ID!) {{ {mutation}(input: {{ id: $id }}) {{ card {{ status }} }} }}"), json!({ "id": card }))
                .await
                .data(&format!("/{mutation}/card/status"))
                .clone()
        }
    };
    assert_eq!(step("blockCard").await, "BLOCKED");
    ring_up(&browser).await;
    agent.wait_for_log("payment request open", 1).await;
    card.tap_and_wait().await;
    let status = browser
        .wait_text("#pay-status", "the decline", |text| {
            text.starts_with("Declined")
        })
        .await;
    assert_eq!(status, "Declined: The card is blocked by its bank.");
    assert_eq!(
        browser.text("#pay-detail").await.as_deref(),
        Some("Ask for another card. The reader waits for the next tap.")
    );
    browser.screenshot(SCREENSHOTS, "checkout-declined").await;
    assert_eq!(step("unblockCard").await, "ACTIVE");

    // The decline reached the operations page live, from the other replica.
    to_window(&browser, &ops).await;
    browser
        .wait_until(
            "the decline in the feed",
            "return !!document.querySelector(\"#feed tr[data-type='payment_request.declined']\");",
            vec![],
        )
        .await;
    let before = feed(&browser).await;

    // Both replicas go away: both pages say so.
    ops_replica.kill();
    till_replica.kill();
    browser
        .wait_text("#connection", "the feed reconnecting", |text| {
            text == "Reconnecting…"
        })
        .await;
    to_window(&browser, &tab).await;
    browser
        .wait_text("#connection", "the checkout reconnecting", |text| {
            text == "Reconnecting…"
        })
        .await;
    // The customer taps while the hub is away: the agent keeps the tap and submits it when it is back.
    card.tap_and_wait().await;

    // The checkout's replica is back: the tap is paid, and the page follows the request again.
    let till_again = app.spawn_replica_on(till_port).await;
    browser
        .wait_text("#connection", "the checkout back", |text| text == "Live")
        .await;
    let status = browser
        .wait_text(
            "#pay-status",
            "the authorization after the outage",
            |text| text.starts_with("AUTHORIZED"),
        )
        .await;
    assert_eq!(status, "AUTHORIZED · card •••• 1234");
    let paid: Value = app
        .graphql(
            Some(&checkout.member),
            "{ paymentRequests(filter: { status: PAID }) { totalCount } }",
            json!({}),
        )
        .await
        .data("/paymentRequests/totalCount")
        .clone();
    assert_eq!(paid, 1, "paid once");

    // What the operations page missed meanwhile, as the hub's log has it.
    let newest = before
        .first()
        .map(|(position, _)| *position)
        .expect("rows before the outage");
    let missed: Vec<(i64, String)> = app
        .graphql(
            Some(&admin),
            "query($after: String) { events(after: $after, first: 500) { nodes { position eventType } } }",
            json!({ "after": newest.to_string() }),
        )
        .await
        .data("/events/nodes")
        .as_array()
        .expect("events")
        .iter()
        .map(|event| {
            (
                event["position"].as_str().and_then(|p| p.parse().ok()).or_else(|| event["position"].as_i64()).expect("position"),
                event["eventType"].as_str().expect("type").to_owned(),
            )
        })
        .collect();
    assert!(
        missed.iter().any(|(_, kind)| kind == "payment.authorized"),
        "the payment happened while the operations page was cut off: {missed:?}"
    );
    to_window(&browser, &ops).await;
    assert_eq!(
        browser.text("#connection").await.as_deref(),
        Some("Reconnecting…"),
        "the operations page is still cut off"
    );

    // Its replica is back: the feed resumes from its cursor with exactly what it missed (a fresh
    // subscription would only show later events), none twice, and the rows it had stay.
    let ops_again = app.spawn_replica_on(ops_port).await;
    browser
        .wait_text("#connection", "the feed back", |text| text == "Live")
        .await;
    let mut expected: Vec<(i64, String)> = missed.iter().rev().cloned().collect();
    expected.extend(before.iter().cloned());
    let newest_missed = expected[0].0;
    browser
        .wait_until(
            "the missed events in the feed",
            "return [...document.querySelectorAll('#feed tr')].some(r => Number(r.dataset.position) === arguments[0]);",
            vec![json!(newest_missed)],
        )
        .await;
    let shown: Vec<(i64, String)> = feed(&browser)
        .await
        .into_iter()
        .filter(|(position, _)| *position <= newest_missed)
        .collect();
    assert_eq!(
        shown, expected,
        "the feed after the outage: the rows it had and exactly the missed ones, newest first"
    );

    // The hour's figures are read again once the hub is back: one declined tap, one authorized.
    browser
        .wait_until(
            "the figures after the outage",
            "const a = document.getElementById('approval').dataset; return a.authorized === '1' && a.declined === '1';",
            vec![],
        )
        .await;
    browser
        .wait_text(
            "#declines tr[data-reason='CARD_BLOCKED'] td:last-child",
            "the decline by reason",
            |text| text == "1",
        )
        .await;
    browser.screenshot(SCREENSHOTS, "ops-after-outage").await;
    browser.stop().await;
    drop(ops_again);
    drop(till_again);
    drop(card);
    drop(agent);
    checkout.app.stop().await;
}

/// GraphiQL at `/` runs from the hub's own bundled assets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_without_a_cdn() {
    let app = TestApp::start(Backend::Sqlite).await;
    let page = app
        .client
        .get(format!("{}/", app.base_url))
        .send()
        .await
        .expect("page");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("unpkg") && !html.contains("cdn") && !html.contains("https://"),
        "{html}"
    );
    for asset in [
        "graphiql.min.js",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.css",
    ] {
        let response = app
            .client
            .get(format!("{}/assets/vendor/{asset}", app.base_url))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset} is bundled");
    }
    let browser = Browser::start(1280, 800).await;
    browser.goto(&format!("{}/", app.base_url)).await;
    browser
        .wait_until(
            "GraphiQL's editor",
            "return !!document.querySelector('.graphiql-container .CodeMirror');",
            vec![],
        )
        .await;
    browser.screenshot(SCREENSHOTS, "graphiql").await;
    browser.stop().await;
    app.stop().await;
}
