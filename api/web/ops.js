// The operators' page: the live feed of events (resumed from its cursor after a reconnect), payments
// per minute and the approval rate over the last hour, declines by reason, open payment requests per
// terminal, and clearing batches.
import { Live, el, fill, gql, money, session, showConnection, startPage } from "/assets/hub.js";

const FEED_ROWS = 50;
const EVENTS = `subscription($after: String) { events(after: $after) {
  position eventType recordType recordId status occurredAt } }`;
const HOUR = `query($from: DateTime!, $to: DateTime!) {
  analytics(from: $from, to: $to) {
    paymentsByMinute { minute authorized declined }
    paymentOutcomes { authorized declineReason count } }
  paymentRequests(first: 100, filter: { status: OPEN }) { totalCount nodes { terminalId amountMinor currency } }
  devices(first: 100) { nodes { id name } }
  clearingBatches(first: 10) { nodes { manifestId status currency netMinor entryCount openedAt closedAt } } }`;
const PAYMENT = `query($id: ID!) { node(id: $id) { ... on Payment { id amountMinor currency status cardLastFour } } }`;

const $ = (id) => document.getElementById(id);
// The position of the last event shown: the feed resumes after it, and shows nothing at or before it.
const feed = { cursor: null };
let refreshTimer = null;
let pollTimer = null;

function start() {
  startPage($("app"), $("signin-area"), signedIn);
}

function signedIn(me) {
  $("who").textContent = `${me.member ? me.member.name : me.device.name} · ${me.organization.name}`;
  const live = new Live((status) => {
    showConnection($("connection"), status);
    // Back after an outage: the figures may have been refused meanwhile.
    if (status === "live") refresh();
    if (status === "refused") {
      live.close();
      clearInterval(pollTimer);
      session.signOut();
      start();
    }
  });
  // After a reconnect the feed asks for what came after the last event it showed: no gap, no repeat.
  // The hub ends a feed that fell behind (SLOW_CONSUMER, with the cursor to resume from) or whose
  // cursor was purged (CURSOR_EXPIRED): kept, it starts again from where it says.
  live.subscribe(EVENTS, () => ({ after: feed.cursor }), {
    keep: true,
    next: (data) => {
      $("feed-note").textContent = "";
      showEvent(data.events);
    },
    error: (err, raw) => {
      const cursor = raw && raw.extensions && raw.extensions.cursor;
      if (cursor) feed.cursor = String(cursor);
      if (err.code === "CURSOR_EXPIRED") {
        // What came in between is gone from the hub: say so, and go on from the newest events.
        feed.cursor = null;
        $("feed-note").textContent = "Some events are no longer kept by the hub: the feed goes on from now.";
        refresh();
      } else {
        $("feed-note").textContent = `The feed stopped (${err.code}); resuming.`;
      }
    },
  });
  pollTimer = setInterval(refresh, 30000);
}

/** Positions are increasing Int64s (as strings): compare them exactly. */
const after = (position, cursor) => cursor === null || BigInt(position) > BigInt(cursor);

function showEvent(event) {
  if (!after(event.position, feed.cursor)) return; // a repeat would be a bug upstream; never show it twice
  feed.cursor = event.position;
  const row = el("tr", { class: "event", "data-position": event.position, "data-type": event.eventType },
    el("td", { class: "time", text: new Date(event.occurredAt).toLocaleTimeString() }),
    el("td", { class: "type", text: event.eventType }),
    el("td", { text: event.recordType }),
    el("td", { class: "status", text: event.status }),
    el("td", { class: "detail" }));
  $("feed").prepend(row);
  while ($("feed").children.length > FEED_ROWS) $("feed").lastElementChild.remove();
  if (event.eventType === "payment.authorized") showPayment(event.recordId, row);
  if (event.recordType === "Payment" || event.recordType === "PaymentRequest" || event.recordType === "ClearingBatch") {
    // Many events in a burst: one refresh of the figures.
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, 500);
  }
}

async function showPayment(id, row) {
  try {
    const data = await gql(PAYMENT, { id });
    const payment = data.node;
    if (!payment) return;
    const card = payment.cardLastFour ? ` · •••• ${payment.cardLastFour}` : "";
    row.querySelector(".detail").textContent = `${money(payment.amountMinor, payment.currency)}${card}`;
  } catch (err) {
    row.querySelector(".detail").textContent = err.message;
  }
}

async function refresh() {
  const to = new Date();
  const from = new Date(to.getTime() - 3600 * 1000);
  let data;
  try {
    data = await gql(HOUR, { from: from.toISOString(), to: new Date(to.getTime() + 60000).toISOString() });
  } catch (err) {
    $("figures-note").textContent = `Figures unavailable: ${err.message}`;
    return;
  }
  $("figures-note").textContent = `Last hour, as of ${to.toLocaleTimeString()}`;
  renderChart(data.analytics.paymentsByMinute, from);
  renderDeclines(data.analytics.paymentOutcomes);
  renderOpenRequests(data.paymentRequests, data.devices.nodes);
  renderBatches(data.clearingBatches.nodes);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Sixty bars, one per minute (authorized below, declined on top), and the hour's approval rate. */
function renderChart(minutes, from) {
  const byMinute = new Map(minutes.map((m) => [new Date(m.minute).getTime(), m]));
  const first = Math.floor(from.getTime() / 60000) * 60000;
  const bars = [];
  let authorized = 0;
  let declined = 0;
  for (let i = 0; i <= 60; i++) {
    const m = byMinute.get(first + i * 60000);
    const a = m ? Number(m.authorized) : 0;
    const d = m ? Number(m.declined) : 0;
    authorized += a;
    declined += d;
    bars.push({ a, d, at: new Date(first + i * 60000) });
  }
  const peak = Math.max(1, ...bars.map((b) => b.a + b.d));
  const width = 610;
  const height = 160;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img", "aria-label": "Payments per minute, last hour" });
  bars.forEach((bar, i) => {
    const x = i * 10;
    const ha = (bar.a / peak) * height;
    const hd = (bar.d / peak) * height;
    const title = `${bar.at.toLocaleTimeString()}: ${bar.a} authorized, ${bar.d} declined`;
    for (const [kind, h, y] of [["authorized", ha, height - ha], ["declined", hd, height - ha - hd]]) {
      if (h <= 0) continue;
      const rect = svg("rect", { class: kind, x, y, width: 8, height: h });
      rect.append(svg("title", {}, title));
      chart.append(rect);
    }
  });
  chart.append(svg("text", { x: 0, y: height + 16, class: "axis" }, bars[0].at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  chart.append(svg("text", { x: width - 40, y: height + 16, class: "axis" }, "now"));
  chart.append(svg("text", { x: 0, y: 12, class: "axis" }, `${peak}/min`));
  fill($("chart"), chart);
  const total = authorized + declined;
  $("approval").textContent = total === 0 ? "No payments in the last hour" :
    `${authorized} authorized, ${declined} declined: ${((authorized / total) * 100).toFixed(1)}% approved`;
  $("approval").dataset.authorized = authorized;
  $("approval").dataset.declined = declined;
}

function renderDeclines(outcomes) {
  const byReason = new Map();
  for (const row of outcomes) {
    if (row.authorized) continue;
    const reason = row.declineReason || "UNKNOWN";
    byReason.set(reason, (byReason.get(reason) || 0) + Number(row.count));
  }
  const rows = [...byReason.entries()].sort((a, b) => b[1] - a[1]);
  fill($("declines"), rows.length === 0
    ? el("tr", {}, el("td", { colSpan: 2, class: "muted", text: "No declines" }))
    : rows.map(([reason, count]) => el("tr", { "data-reason": reason }, el("td", { text: reason }), el("td", { class: "number", text: String(count) }))));
}

function renderOpenRequests(requests, devices) {
  const names = new Map(devices.map((d) => [d.id, d.name]));
  const byTerminal = new Map();
  for (const request of requests.nodes) {
    const entry = byTerminal.get(request.terminalId) || { count: 0, sums: new Map() };
    entry.count += 1;
    entry.sums.set(request.currency, (entry.sums.get(request.currency) || 0n) + BigInt(request.amountMinor));
    byTerminal.set(request.terminalId, entry);
  }
  fill($("open-requests"), byTerminal.size === 0
    ? el("tr", {}, el("td", { colSpan: 3, class: "muted", text: "No open payment requests" }))
    : [...byTerminal.entries()].map(([terminal, entry]) => el("tr", {},
        el("td", { text: names.get(terminal) || terminal }),
        el("td", { class: "number", text: String(entry.count) }),
        el("td", { class: "number", text: [...entry.sums.entries()].map(([currency, sum]) => money(sum, currency)).join(", ") }))));
  $("open-total").textContent = String(requests.totalCount);
}

function renderBatches(batches) {
  fill($("batches"), batches.length === 0
    ? el("tr", {}, el("td", { colSpan: 4, class: "muted", text: "No clearing batches yet" }))
    : batches.map((batch) => el("tr", {},
        el("td", { text: batch.manifestId }),
        el("td", { text: batch.status }),
        el("td", { class: "number", text: batch.entryCount === null ? "—" : String(batch.entryCount) }),
        el("td", { class: "number", text: batch.netMinor === null ? "open" : money(batch.netMinor, batch.currency) }))));
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-out").addEventListener("click", () => { session.signOut(); location.reload(); });
  start();
});
