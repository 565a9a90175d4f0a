// What both pages share: the session's token, GraphQL over HTTP, a graphql-transport-ws client that
// reconnects and resubscribes, money in minor units, and DOM building that only ever sets text.

const TOKEN_KEY = "hub.token";

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  // Kept in sessionStorage: gone with the tab, never in a URL, never in localStorage.
  signIn: (token) => sessionStorage.setItem(TOKEN_KEY, token.trim()),
  signOut: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A GraphQL error with the hub's code (`extensions.code`), or NETWORK when the hub did not answer. */
export class HubError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** Runs a query or mutation; resolves to `data`, rejects with a HubError. */
export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${session.token()}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new HubError("NETWORK", "The hub does not answer.");
  }
  let body;
  try {
    body = await response.json();
  } catch (err) {
    throw new HubError("NETWORK", `The hub answered ${response.status}.`);
  }
  if (body.errors && body.errors.length > 0) {
    const first = body.errors[0];
    throw new HubError((first.extensions && first.extensions.code) || "ERROR", first.message);
  }
  return body.data;
}

/**
 * One WebSocket to the hub (graphql-transport-ws), kept open: when it drops, it reconnects with backoff
 * and starts every subscription again, each with the variables its `variables()` gives then (so a feed
 * resumes from its cursor). `onStatus` hears "connecting", "live" and "reconnecting".
 */
export class Live {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.failures = 0;
    this.closed = false;
    this.connect();
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    this.acked = false;
    this.onStatus(this.failures === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(`${scheme}//${location.host}/graphql`, "graphql-transport-ws");
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({
        type: "connection_init",
        payload: { Authorization: `Bearer ${session.token()}` },
      }));
    };
    socket.onmessage = (message) => this.receive(JSON.parse(message.data));
    socket.onclose = (event) => this.lost(event);
  }

  receive(message) {
    if (message.type === "connection_ack") {
      this.acked = true;
      this.failures = 0;
      this.onStatus("live");
      for (const [id, subscription] of this.subscriptions) this.start(id, subscription);
      return;
    }
    if (message.type === "ping") {
      this.socket.send(JSON.stringify({ type: "pong" }));
      return;
    }
    const subscription = this.subscriptions.get(message.id);
    if (!subscription) return;
    if (message.type === "next") {
      const errors = message.payload.errors;
      if (errors && errors.length > 0) {
        const first = errors[0];
        subscription.error(new HubError((first.extensions && first.extensions.code) || "ERROR", first.message), first);
      } else {
        subscription.next(message.payload.data);
      }
    } else if (message.type === "error") {
      const first = (message.payload && message.payload[0]) || {};
      this.subscriptions.delete(message.id);
      subscription.error(new HubError((first.extensions && first.extensions.code) || "ERROR", first.message || "refused"), first);
    } else if (message.type === "complete") {
      this.subscriptions.delete(message.id);
      subscription.complete();
    }
  }

  lost(event) {
    if (this.closed) return;
    // The hub refused the token or the member: reconnecting would be refused again.
    if (event.code === 4403 || event.code === 4401) {
      this.onStatus("refused");
      return;
    }
    this.failures += 1;
    this.onStatus("reconnecting");
    const delay = Math.min(10000, 250 * 2 ** Math.min(this.failures, 6)) * (0.5 + Math.random() / 2);
    setTimeout(() => this.connect(), delay);
  }

  start(id, subscription) {
    this.socket.send(JSON.stringify({
      id,
      type: "subscribe",
      payload: { query: subscription.query, variables: subscription.variables() },
    }));
  }

  /** Subscribes; `handlers` has next(data), error(HubError, raw) and complete(). Returns a stop function. */
  subscribe(query, variables, handlers) {
    const id = String(this.nextId++);
    const subscription = {
      query,
      variables: typeof variables === "function" ? variables : () => variables,
      next: handlers.next || (() => {}),
      error: handlers.error || (() => {}),
      complete: handlers.complete || (() => {}),
    };
    this.subscriptions.set(id, subscription);
    if (this.acked) this.start(id, subscription);
    return () => {
      if (this.subscriptions.delete(id) && this.acked) {
        this.socket.send(JSON.stringify({ id, type: "complete" }));
      }
    };
  }

  close() {
    this.closed = true;
    this.socket.close();
  }
}

/** Digits after the decimal point of `currency` (EUR 2, JPY 0, KWD 3), as ISO 4217 has them. */
export function minorDigits(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  } catch (err) {
    return 2;
  }
}

/** An amount in minor units (a string or number, as Int64 arrives) as money in its currency. */
export function money(minor, currency) {
  const digits = minorDigits(currency);
  const units = BigInt(minor);
  const scale = 10n ** BigInt(digits);
  const negative = units < 0n;
  const abs = negative ? -units : units;
  const whole = abs / scale;
  const fraction = (abs % scale).toString().padStart(digits, "0");
  // Formatting the whole part and the fraction separately keeps every digit of large amounts exact.
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits });
  const parts = format.formatToParts(0);
  let out = "";
  for (const part of parts) {
    if (part.type === "integer") out += new Intl.NumberFormat(undefined).format(whole);
    else if (part.type === "fraction") out += fraction;
    else out += part.value;
  }
  return negative ? `-${out}` : out;
}

/** Builds an element. Children are elements or strings; strings become text nodes, never markup. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return node;
}

/** Replaces `node`'s children. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
}

/** Shows the connection's state in `node` (data-state drives its colour). */
export function showConnection(node, state) {
  const words = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", refused: "Signed out: the hub refused the token" };
  node.textContent = words[state] || state;
  node.dataset.state = state;
}

/** A sign-in form: a pasted member token, checked against the hub before it is kept. */
export function signInForm(container, onSignedIn) {
  const input = el("textarea", { id: "token", rows: 4, placeholder: "Paste your member token", autocomplete: "off", spellcheck: false });
  const error = el("p", { class: "error", id: "signin-error", role: "alert" });
  const form = el("form", { id: "signin", class: "card" },
    el("h2", { text: "Sign in" }),
    el("label", { for: "token", text: "Member token" }),
    input,
    error,
    el("button", { type: "submit", id: "signin-button", text: "Sign in" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.signIn(input.value);
    try {
      const data = await gql("{ me { role member { name } device { name } organization { name } } }");
      onSignedIn(data.me);
    } catch (err) {
      session.signOut();
      error.textContent = err.code === "UNAUTHENTICATED" ? "That token is not valid (or has expired)." : err.message;
    }
  });
  fill(container, form);
}
