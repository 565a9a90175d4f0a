//! The payments scenario: virtual cards personalized with the issuer tooling, a terminal device signing
//! its own tokens, and per operation one payment request and one `payWithOneTimeNumber` with full
//! verification.

use std::path::Path;

use anyhow::{Context as _, bail};
use api::records::{GlobalId, RecordKind};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use card_protocol::{
    CardId,
    apdu::{self, Command, sw},
    card::{CardApplication, CardFile},
    card_signature::PaymentRequestFields,
    issuer::{Issuance, IssuerFile},
    number::PrefixRange,
    token::{Channel, DomainRestrictions, TOKEN_LEN},
};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::client::{Hub, mint_token};

const REQUEST: &str = "mutation RequestPayment($input: RequestPaymentInput!) { requestPayment(input: $input) { paymentRequest {
    id amountMinor challenge signingFields { requestId merchantId terminalId hubInstanceId } } } }";
const PAY: &str = "mutation PayWithOneTimeNumber($input: PayWithOneTimeNumberInput!) { payWithOneTimeNumber(input: $input) { status declineReason payment { id } } }";

/// One checkout lane: a registered device with its own key.
struct Terminal {
    global_id: String,
    id: Uuid,
    key: SigningKey,
}

/// One client's lane, cards and order.
struct ClientState {
    terminal: Terminal,
    order: String,
    cards: Vec<CardApplication>,
    clock_ms: u64,
}

pub struct PaymentFixture {
    hub: Hub,
    clients: Vec<Mutex<ClientState>>,
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("random: {err}"))?;
    Ok(bytes)
}

pub fn id_at(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no {pointer} in {value}"))
}

/// A token for the bank's ADMIN: given as a file, or minted with `hub token create` (which needs the
/// hub's database and key settings in the environment, as for the hub itself).
fn bank_token(
    bank_name: &str,
    token_file: Option<&Path>,
    hub_bin: &Path,
) -> anyhow::Result<String> {
    match token_file {
        Some(file) => Ok(std::fs::read_to_string(file)?.trim().to_owned()),
        None => mint_token(bank_name, hub_bin),
    }
}

/// A bench bank: an organization with an issuer key over a random prefix of its own, and what the
/// issuer tooling needs to personalize cards for it.
pub struct BenchBank {
    /// The hub as the bank's ADMIN.
    pub hub: Hub,
    pub issuer: IssuerFile,
    pub issuance: Issuance,
}

impl BenchBank {
    pub async fn seed(
        hub: &Hub,
        run: &str,
        bank_token_file: Option<&Path>,
        hub_bin: &Path,
    ) -> anyhow::Result<Self> {
        let bank_name = format!("bench-bank-{run}");
        let bank = hub
            .graphql(
                "mutation($input: CreateOrganizationInput!) { createOrganization(input: $input) { organization { id } } }",
                json!({ "input": { "name": bank_name, "kind": "FINANCIAL_PROVIDER", "adminName": "admin" } }),
            )
            .await
            .context("creating the bank (the token must be the retailer's ADMIN)")?;
        let bank_gid = id_at(&bank, "/createOrganization/organization/id")?;
        let bank_id = bank_gid
            .parse::<GlobalId>()?
            .id_of(RecordKind::Organization)
            .context("the bank's ID names an organization")?;
        let bank_hub = hub.with_token(&bank_token(&bank_name, bank_token_file, hub_bin)?);

        // The bank's key with a prefix of its own.
        let digits: [u8; 7] = random()?;
        let prefix = format!(
            "4{}",
            digits
                .iter()
                .map(|d| char::from(b'0' + d % 10))
                .collect::<String>()
        );
        let not_after = chrono::Utc::now().timestamp() as u64 + 30 * 86_400;
        let issuer = IssuerFile::new(
            bank_id.into(),
            1,
            random()?,
            PrefixRange::new(&prefix)?,
            not_after,
        );
        bank_hub
            .graphql(
                "mutation($input: RegisterIssuerKeyInput!) { registerIssuerKey(input: $input) { issuerKey { id } } }",
                json!({ "input": { "keyId": 1, "publicKey": STANDARD.encode(issuer.signing_key()?.verifying_key().as_bytes()),
                    "prefix": prefix, "notAfter": chrono::DateTime::from_timestamp(not_after as i64, 0).context("time")?.to_rfc3339() } }),
            )
            .await?;
        let issuance = Issuance {
            count: 64,
            restrictions: DomainRestrictions {
                max_amount_minor: 5_000,
                currency: *b"EUR",
                merchant: None,
                channel: Channel::ContactlessPresent,
            },
            not_after: not_after - 86_400,
        };
        Ok(Self {
            hub: bank_hub,
            issuer,
            issuance,
        })
    }

    /// A card with `numbers` one-time numbers, personalized by the issuer tooling and registered.
    pub async fn card(&mut self, numbers: usize) -> anyhow::Result<CardFile> {
        let issuance = Issuance {
            count: numbers,
            ..self.issuance
        };
        let card_file =
            self.issuer
                .personalize(CardId::from_bytes(random()?), random()?, &issuance)?;
        let card = CardApplication::from_file(&card_file)?;
        self.hub
            .graphql(
                "mutation($input: RegisterCardInput!) { registerCard(input: $input) { card { id } } }",
                json!({ "input": { "cardId": card_file.card_id, "publicKey": STANDARD.encode(card.info().card_public_key), "lastFour": "0000" } }),
            )
            .await?;
        Ok(card_file)
    }
}

/// A shop of the retailer with a product to sell.
pub struct BenchShop {
    pub location: String,
    product: String,
}

impl BenchShop {
    pub async fn seed(hub: &Hub, run: &str) -> anyhow::Result<Self> {
        let location = hub
            .graphql("mutation { createLocation(input: { name: \"Bench shop\", kind: SHOP, street: \"s\", city: \"c\", postalCode: \"p\", countryCode: \"NL\" }) { location { id } } }", json!({}))
            .await?;
        let location = id_at(&location, "/createLocation/location/id")?;
        let product = hub
            .graphql(
                "mutation($input: CreateProductInput!) { createProduct(input: $input) { product { id } } }",
                json!({ "input": { "sku": format!("BENCH-PAY-{run}"), "name": "Bench coffee", "priceMinor": 100, "currency": "EUR" } }),
            )
            .await?;
        let product = id_at(&product, "/createProduct/product/id")?;
        Ok(Self { location, product })
    }

    /// A placed order large enough for any number of payments of 1.00.
    pub async fn placed_order(&self, hub: &Hub) -> anyhow::Result<String> {
        let order = hub
            .graphql(
                "mutation($p: ID!) { createOrder(input: { lines: [{ productId: $p, quantity: 1000000 }] }) { order { id } } }",
                json!({ "p": self.product }),
            )
            .await?;
        let order = id_at(&order, "/createOrder/order/id")?;
        hub.graphql(
            "mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id } } }",
            json!({ "id": order }),
        )
        .await?;
        Ok(order)
    }
}

impl PaymentFixture {
    pub async fn seed(
        hub: &Hub,
        clients: usize,
        cards_per_client: usize,
        bank_token_file: Option<&Path>,
        hub_bin: &Path,
    ) -> anyhow::Result<Self> {
        let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let mut bank = BenchBank::seed(hub, &run, bank_token_file, hub_bin).await?;
        // A shop with one checkout lane (terminal) per client.
        let shop = BenchShop::seed(hub, &run).await?;
        let mut states = Vec::with_capacity(clients);
        for lane in 0..clients {
            let terminal =
                Terminal::register(hub, &shop.location, &format!("bench-till-{run}-{lane}"))
                    .await?;
            let mut cards = Vec::with_capacity(cards_per_client);
            for _ in 0..cards_per_client {
                cards.push(CardApplication::from_file(&bank.card(64).await?)?);
            }
            states.push(Mutex::new(ClientState {
                terminal,
                order: shop.placed_order(hub).await?,
                cards,
                clock_ms: 0,
            }));
        }
        Ok(Self {
            hub: hub.clone(),
            clients: states,
        })
    }
}

impl Terminal {
    async fn register(hub: &Hub, location: &str, name: &str) -> anyhow::Result<Self> {
        let key = SigningKey::from_bytes(&random()?);
        let device = hub
            .graphql(
                "mutation($input: RegisterDeviceInput!) { registerDevice(input: $input) { device { id } } }",
                json!({ "input": { "name": name, "locationId": location,
                    "publicKey": STANDARD.encode(key.verifying_key().as_bytes()) } }),
            )
            .await?;
        let global_id = id_at(&device, "/registerDevice/device/id")?;
        let id = global_id
            .parse::<GlobalId>()?
            .id_of(RecordKind::Device)
            .context("the device's ID names a device")?;
        Ok(Self { global_id, id, key })
    }

    /// The device's self-signed token (the `device-token` crate).
    fn token(&self) -> anyhow::Result<String> {
        device_token::sign(self.id, &self.key, "iot-commerce-hub", 120)
            .map_err(|err| anyhow::anyhow!("device token: {err}"))
    }
}

impl PaymentFixture {
    /// One payment: a request at the terminal, a tap of the client's card, the device's submission.
    /// Returns the authorized payment's ID.
    pub async fn pay_once(&self, client: usize, n: u64) -> anyhow::Result<String> {
        let mut state = self.clients[client].lock().await;
        let request = self
            .hub
            .graphql(REQUEST, json!({ "input": { "orderId": state.order, "terminalId": state.terminal.global_id, "amountMinor": 100, "currency": "EUR" } }))
            .await?;
        let request = request
            .pointer("/requestPayment/paymentRequest")
            .cloned()
            .context("no request")?;
        let fields = &request["signingFields"];
        let uuid = |name: &str| -> anyhow::Result<Uuid> {
            Ok(Uuid::parse_str(fields[name].as_str().context("field")?)?)
        };
        let challenge: [u8; 16] = URL_SAFE_NO_PAD
            .decode(request["challenge"].as_str().context("challenge")?)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("challenge length"))?;
        let signed = PaymentRequestFields {
            request_id: uuid("requestId")?.into(),
            challenge,
            amount_minor: 100,
            currency: *b"EUR",
            merchant: uuid("merchantId")?.into(),
            terminal: uuid("terminalId")?.into(),
            hub_instance: uuid("hubInstanceId")?.into(),
        };
        // The card is driven as a reader would: SELECT, GENERATE PAYMENT, GET RESPONSE; a card without
        // numbers left is put aside.
        let answer = loop {
            let now = state_clock(&mut state.clock_ms);
            let Some(card) = state.cards.last_mut() else {
                bail!("the virtual cards have no numbers left")
            };
            card.process(&Command::select().encode(), now);
            let command = Command::new(
                apdu::CLA_PROPRIETARY,
                apdu::INS_GENERATE_PAYMENT,
                0,
                0,
                &signed.encode(),
                Some(256),
            );
            let first = card.process(&command.encode(), now).response;
            if first.sw == sw::NO_NUMBERS_LEFT {
                state.cards.pop();
                continue;
            }
            let rest = card
                .process(
                    &Command::new(0, apdu::INS_GET_RESPONSE, 0, 0, &[], Some(256)).encode(),
                    now,
                )
                .response;
            let mut answer = first.data;
            answer.extend_from_slice(&rest.data);
            break answer;
        };
        if answer.len() != TOKEN_LEN + 64 {
            bail!("the card answered {} bytes", answer.len());
        }
        let outcome = self
            .hub
            .with_token(&state.terminal.token()?)
            .graphql(PAY, json!({ "input": { "requestId": request["id"], "token": URL_SAFE_NO_PAD.encode(&answer[..TOKEN_LEN]),
                "cardSignature": URL_SAFE_NO_PAD.encode(&answer[TOKEN_LEN..]), "idempotencyKey": format!("bench-{client}-{n}") } }))
            .await?;
        let status = &outcome["payWithOneTimeNumber"];
        if status["status"] != "AUTHORIZED" {
            bail!("payment {}: {}", status["status"], status["declineReason"]);
        }
        id_at(status, "/payment/id")
    }
}

/// The card's rate limit wants time between taps; a virtual card gets a virtual clock.
fn state_clock(clock_ms: &mut u64) -> u64 {
    *clock_ms += 1_000;
    *clock_ms
}

/// The database's own ceiling: pgbench running a one-row insert transaction with `clients` clients.
pub fn pgbench_ceiling(url: &str, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let created = std::process::Command::new("psql")
        .args([url, "-XAtqc", "CREATE TABLE IF NOT EXISTS bench_ceiling (id bigserial PRIMARY KEY, payload text NOT NULL)"])
        .status()
        .context("running psql")?;
    if !created.success() {
        bail!("psql could not create bench_ceiling");
    }
    let script = std::env::temp_dir().join(format!("hub-bench-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        "INSERT INTO bench_ceiling (payload) VALUES ('one row');\n",
    )?;
    let output = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench (Debian ships it with the server package, e.g. postgresql-15)")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|tps| tps.parse().ok())
        })
        .with_context(|| {
            format!(
                "no tps in pgbench output: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
