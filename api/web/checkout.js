// The checkout tablet: sign in, pick the terminal, build a cart from the catalogue, place the order,
// open the payment request and follow it live until the card has paid (or the staff cancel).
import { Live, el, fill, gql, money, session, showConnection, startPage } from "/assets/hub.js";

const PAGE = 8;
const TERMINAL_KEY = "hub.checkout.terminal";

const PRODUCTS = `query($first: Int, $after: String, $last: Int, $before: String, $name: String) {
  products(first: $first, after: $after, last: $last, before: $before, filter: { nameContains: $name }, orderBy: { field: NAME }) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    nodes { id sku name priceMinor currency }
  } }`;
const TERMINALS = `{ devices(first: 100, filter: { status: ACTIVE }) { nodes { id name location { name } } } }`;
const CREATE_ORDER = `mutation($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }`;
const PLACE_ORDER = `mutation($id: ID!) { placeOrder(input: { id: $id }) { order { id totalMinor balanceMinor currency } } }`;
const REQUEST = `mutation($input: RequestPaymentInput!) { requestPayment(input: $input) { paymentRequest { id } } }`;
const CANCEL = `mutation($id: ID!) { cancelPaymentRequest(input: { id: $id }) { paymentRequest { id status } } }`;
const FOLLOW = `subscription($id: ID!) { paymentRequest(id: $id) {
  id status amountMinor currency declineCount lastDeclineReason payment { status cardLastFour } } }`;

// What the staff are told about a decline, and what to do next.
const DECLINES = {
  CARD_BLOCKED: ["The card is blocked by its bank.", "Ask for another card."],
  CARD_UNKNOWN: ["The bank does not know this card.", "Ask for another card."],
  CARD_KEY_MISMATCH: ["The card could not be verified.", "Ask for another card."],
  BAD_CARD_SIGNATURE: ["The card's answer could not be verified.", "Ask the customer to tap again."],
  BAD_ISSUER_SIGNATURE: ["The card's bank signature does not verify.", "Ask for another card."],
  UNKNOWN_ISSUER_KEY: ["The card's bank is not accepted here.", "Ask for another card."],
  ISSUER_KEY_RETIRED: ["The card's bank key has expired.", "Ask for another card."],
  ISSUER_KEY_REVOKED: ["The card's bank key was withdrawn.", "Ask for another card."],
  NUMBER_OUT_OF_RANGE: ["The card's number is not valid for its bank.", "Ask for another card."],
  NUMBER_EXPIRED: ["The card has expired.", "Ask for another card."],
  DOMAIN_RESTRICTION: ["The card may not pay this amount here.", "Ask for another card, or split the payment."],
  CVM_REQUIRED: ["The card asks for cardholder verification.", "Ask for another card (or a payment with PIN)."],
  LIMIT_EXCEEDED: ["This terminal reached its payment limit.", "Use another terminal, or ask a manager."],
  NUMBER_ALREADY_USED: ["The card repeated an answer it gave before.", "Ask the customer to tap again."],
  SEQUENCE_REUSED: ["The card repeated an answer it gave before.", "Ask the customer to tap again."],
  PAST_DEADLINE: ["The tap came too late.", "Start the payment again."],
  AMOUNT_ABOVE_BALANCE: ["The amount is more than the order's balance.", "Start the payment again."],
  REQUEST_CANCELLED: ["This payment was cancelled.", "Start the payment again."],
  REQUEST_ALREADY_PAID: ["This payment is already paid.", "Nothing more to do."],
  REQUEST_UNKNOWN: ["The terminal did not know this payment.", "Start the payment again."],
};

const $ = (id) => document.getElementById(id);
const state = { cart: new Map(), page: { first: PAGE }, pageInfo: null, order: null, request: null, stop: null, key: null };
let live = null;

function start() {
  startPage($("app"), $("signin-area"), signedIn);
}

async function signedIn(me) {
  $("who").textContent = `${me.member ? me.member.name : me.device.name} · ${me.organization.name}`;
  live = new Live((status) => {
    showConnection($("connection"), status);
    if (status === "refused") {
      live.close();
      session.signOut();
      start();
    }
  });
  await loadTerminals();
  await search();
}

async function loadTerminals() {
  const data = await gql(TERMINALS);
  const select = $("terminal");
  const saved = localStorage.getItem(TERMINAL_KEY);
  fill(select, data.devices.nodes.map((device) =>
    el("option", { value: device.id, selected: device.id === saved },
      device.location ? `${device.name} (${device.location.name})` : device.name)));
}

async function search(page = { first: PAGE }) {
  state.page = page;
  const name = $("search").value.trim();
  try {
    const data = await gql(PRODUCTS, { ...page, name: name === "" ? null : name });
    state.pageInfo = data.products.pageInfo;
    renderProducts(data.products.nodes);
  } catch (err) {
    fill($("products"), el("li", { class: "error", text: err.message }));
  }
}

function renderProducts(products) {
  fill($("products"), products.length === 0
    ? el("li", { class: "muted", text: "No products match." })
    : products.map((product) => el("li", { class: "product", "data-sku": product.sku },
        el("span", { class: "name", text: product.name }),
        el("span", { class: "price", text: money(product.priceMinor, product.currency) }),
        el("button", { type: "button", class: "add", text: "Add", onclick: () => addToCart(product) }))));
  $("previous").disabled = !state.pageInfo.hasPreviousPage;
  $("next").disabled = !state.pageInfo.hasNextPage;
}

function addToCart(product) {
  const line = state.cart.get(product.id) || { product, quantity: 0 };
  line.quantity += 1;
  state.cart.set(product.id, line);
  state.key = null; // another cart: another order
  renderCart();
}

function changeQuantity(id, delta) {
  const line = state.cart.get(id);
  line.quantity += delta;
  if (line.quantity <= 0) state.cart.delete(id);
  state.key = null;
  renderCart();
}

function cartTotal() {
  let total = 0n;
  let currency = null;
  for (const { product, quantity } of state.cart.values()) {
    total += BigInt(product.priceMinor) * BigInt(quantity);
    currency = product.currency;
  }
  return { total, currency };
}

function renderCart() {
  const lines = [...state.cart.values()];
  fill($("cart"), lines.map(({ product, quantity }) => el("li", { class: "line" },
    el("span", { class: "name", text: product.name }),
    el("span", { class: "quantity" },
      el("button", { type: "button", class: "less", "aria-label": "one less", text: "−", onclick: () => changeQuantity(product.id, -1) }),
      el("span", { class: "count", text: String(quantity) }),
      el("button", { type: "button", class: "more", "aria-label": "one more", text: "+", onclick: () => changeQuantity(product.id, 1) })),
    el("span", { class: "price", text: money(BigInt(product.priceMinor) * BigInt(quantity), product.currency) }))));
  const { total, currency } = cartTotal();
  $("total").textContent = currency ? money(total, currency) : "—";
  $("charge").disabled = lines.length === 0;
}

function setMessage(text, kind = "") {
  const node = $("message");
  node.textContent = text;
  node.className = kind;
}

async function charge() {
  $("charge").disabled = true;
  setMessage("Placing the order…");
  try {
    // One key per cart: a retry after a lost answer finds the same order instead of making another.
    state.key = state.key || crypto.randomUUID();
    const lines = [...state.cart.values()].map(({ product, quantity }) => ({ productId: product.id, quantity }));
    const created = await gql(CREATE_ORDER, { input: { lines, idempotencyKey: state.key } });
    const placed = await gql(PLACE_ORDER, { id: created.createOrder.order.id });
    state.order = placed.placeOrder.order;
    await openRequest();
  } catch (err) {
    setMessage(`Could not place the order: ${err.message}`, "error");
    $("charge").disabled = false;
  }
}

async function openRequest() {
  const order = state.order;
  localStorage.setItem(TERMINAL_KEY, $("terminal").value);
  const data = await gql(REQUEST, { input: {
    orderId: order.id, terminalId: $("terminal").value, amountMinor: order.balanceMinor, currency: order.currency } });
  follow(data.requestPayment.paymentRequest.id);
}

function follow(id) {
  if (state.stop) state.stop();
  state.request = { id, status: "OPEN" };
  $("sale").hidden = true;
  $("payment").hidden = false;
  $("payment").dataset.status = "OPEN";
  $("pay-amount").textContent = money(state.order.balanceMinor, state.order.currency);
  $("pay-status").textContent = "Tap the card on the reader";
  $("pay-detail").textContent = "";
  $("cancel").hidden = false;
  $("retry").hidden = true;
  $("new-sale").hidden = true;
  // The hub ends it once the request is PAID or CANCELLED. Ended while still open (the hub cut a
  // slow stream), it starts again, and its first answer is the request as it is then: nothing missed.
  state.stop = live.subscribe(FOLLOW, { id }, {
    keep: () => state.request !== null && state.request.id === id && state.request.status === "OPEN",
    next: (data) => showRequest(data.paymentRequest),
    error: (err) => { $("pay-detail").textContent = `The hub stopped following this payment: ${err.message}`; },
  });
}

function showRequest(request) {
  state.request = request;
  const panel = $("payment");
  $("pay-amount").textContent = money(request.amountMinor, request.currency);
  if (request.status === "PAID") {
    panel.dataset.status = "AUTHORIZED";
    const card = request.payment && request.payment.cardLastFour ? ` · card •••• ${request.payment.cardLastFour}` : "";
    $("pay-status").textContent = `AUTHORIZED${card}`;
    $("pay-detail").textContent = "Paid. Hand over the receipt.";
    $("cancel").hidden = true;
    $("new-sale").hidden = false;
  } else if (request.status === "CANCELLED") {
    panel.dataset.status = "CANCELLED";
    $("pay-status").textContent = "Cancelled";
    $("pay-detail").textContent = "No money was taken.";
    $("cancel").hidden = true;
    $("retry").hidden = false;
    $("new-sale").hidden = false;
  } else if (request.lastDeclineReason) {
    panel.dataset.status = "DECLINED";
    const [why, next] = DECLINES[request.lastDeclineReason] || ["The card was declined.", "Ask for another card."];
    $("pay-status").textContent = `Declined: ${why}`;
    $("pay-detail").textContent = `${next} The reader waits for the next tap.`;
    $("pay-detail").dataset.reason = request.lastDeclineReason;
  } else {
    panel.dataset.status = "OPEN";
    $("pay-status").textContent = "Tap the card on the reader";
  }
}

async function cancel() {
  try {
    await gql(CANCEL, { id: state.request.id });
  } catch (err) {
    $("pay-detail").textContent = `Could not cancel: ${err.message}`;
  }
}

async function retry() {
  try {
    await openRequest();
  } catch (err) {
    $("pay-detail").textContent = `Could not start again: ${err.message}`;
  }
}

function newSale() {
  if (state.stop) state.stop();
  Object.assign(state, { cart: new Map(), order: null, request: null, stop: null, key: null });
  renderCart();
  setMessage("");
  $("payment").hidden = true;
  $("sale").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
  $("next").addEventListener("click", () => search({ first: PAGE, after: state.pageInfo.endCursor }));
  $("previous").addEventListener("click", () => search({ last: PAGE, before: state.pageInfo.startCursor }));
  $("charge").addEventListener("click", charge);
  $("cancel").addEventListener("click", cancel);
  $("retry").addEventListener("click", retry);
  $("new-sale").addEventListener("click", newSale);
  $("sign-out").addEventListener("click", () => { session.signOut(); location.reload(); });
  renderCart();
  start();
});
