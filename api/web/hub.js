// What both pages share: the session's token, GraphQL over HTTP, a graphql-transport-ws client that
// reconnects and resubscribes, money in minor units, and DOM building that only ever sets text.
import { MINOR_UNITS } from "/assets/currencies.js";

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

/** How often the client asks the hub whether the connection still carries messages, and how long it waits. */
const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;
/** How long a subscription the hub ended waits before it starts again (when it asked to be kept). */
const RESTART_AFTER_MS = 1000;

/**
 * One WebSocket to the hub (graphql-transport-ws), kept open: when it drops, or stops answering pings
 * (a half-open connection after a network change shows no close), it reconnects with backoff and
 * starts every subscription again, each with the variables its `variables()` gives then (so a feed
 * resumes from its cursor). `onStatus` hears "connecting", "live", "reconnecting" and "refused".
 */
export class Live {
  constructor(onStatus) {
    this.onStatus = onStatus;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.failures = 0;
    this.closed = false;
    this.timers = new Set();
    this.connect();
  }

  later(delay, action) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.closed) action();
    }, delay);
    this.timers.add(timer);
    return timer;
  }

  connect() {
    if (this.closed) return;
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
    socket.onmessage = (message) => {
      if (socket === this.socket) this.receive(JSON.parse(message.data));
    };
    socket.onclose = (event) => {
      if (socket === this.socket) this.lost(event);
    };
  }

  /** Pings the hub; no pong in time means the connection is dead even if no close ever arrives. */
  keepAlive(socket) {
    this.later(PING_EVERY_MS, () => {
      if (socket !== this.socket) return;
      this.awaitingPong = true;
      socket.send(JSON.stringify({ type: "ping" }));
      this.later(PONG_WITHIN_MS, () => {
        if (socket !== this.socket || !this.awaitingPong) return;
        this.socket = null; // its late close, if any, no longer counts
        socket.close();
        this.lost({ code: 1006 });
      });
      this.keepAlive(socket);
    });
  }

  receive(message) {
    if (message.type === "connection_ack") {
      this.acked = true;
      this.failures = 0;
      this.awaitingPong = false;
      this.onStatus("live");
      this.keepAlive(this.socket);
      for (const [id, subscription] of this.subscriptions) this.start(id, subscription);
      return;
    }
    if (message.type === "ping") {
      this.socket.send(JSON.stringify({ type: "pong" }));
      return;
    }
    if (message.type === "pong") {
      this.awaitingPong = false;
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
      subscription.complete();
      // The hub ended it (a feed that fell behind, a cursor too old): a kept subscription starts
      // again with its variables as they are then, which say where to resume.
      if (subscription.keep()) {
        this.later(RESTART_AFTER_MS, () => {
          if (this.subscriptions.get(message.id) === subscription && this.acked) this.start(message.id, subscription);
        });
      } else {
        this.subscriptions.delete(message.id);
      }
    }
  }

  lost(event) {
    if (this.closed) return;
    // The hub refused the token or the member: reconnecting would be refused again.
    if (event.code === 4403 || event.code === 4401) {
      this.onStatus("refused");
      return;
    }
    this.acked = false;
    this.failures += 1;
    this.onStatus("reconnecting");
    const delay = Math.min(10000, 250 * 2 ** Math.min(this.failures, 6)) * (0.5 + Math.random() / 2);
    this.later(delay, () => this.connect());
  }

  start(id, subscription) {
    this.socket.send(JSON.stringify({
      id,
      type: "subscribe",
      payload: { query: subscription.query, variables: subscription.variables() },
    }));
  }

  /**
   * Subscribes; `handlers` has next(data), error(HubError, raw) and complete(). With `keep` (true, or a
   * function that says so when asked) a subscription the hub completes starts again; a refused one (an
   * `error` message) does not.
   * Returns a stop function.
   */
  subscribe(query, variables, handlers) {
    const id = String(this.nextId++);
    const subscription = {
      query,
      variables: typeof variables === "function" ? variables : () => variables,
      next: handlers.next || (() => {}),
      error: handlers.error || (() => {}),
      complete: handlers.complete || (() => {}),
      keep: typeof handlers.keep === "function" ? handlers.keep : () => handlers.keep === true,
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
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (this.socket) this.socket.close();
  }
}

/**
 * Digits after the decimal point of `currency` (EUR 2, JPY 0, KWD 3), from the ISO 4217 table the hub
 * validates currencies with; a browser's own table differs for some currencies (IQD, RSD, ...).
 */
export function minorDigits(currency) {
  const digits = MINOR_UNITS[currency];
  return digits === undefined ? 2 : digits;
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

/** Properties set as such (their attribute is only the initial state); everything else is an attribute. */
const PROPERTIES = new Set(["value", "checked", "selected", "disabled", "hidden"]);
/** What could turn a value into markup or a URL to load: never set through `el`. */
const FORBIDDEN = new Set(["innerHTML", "outerHTML", "srcdoc", "href", "src", "style", "action", "formaction"]);

/**
 * Builds an element. `props`: `class`, `text` (its text), `onX` (a listener), a few properties, and
 * attributes (`false` drops a boolean attribute, except `spellcheck` and `aria-*`, whose "false" means
 * something). Children are elements or strings; strings become text nodes, never markup.
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (FORBIDDEN.has(key)) throw new Error(`el() does not set ${key}`);
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) {
      if (typeof value !== "function") throw new Error(`${key} must be a function`);
      node.addEventListener(key.slice(2), value);
    } else if (PROPERTIES.has(key)) node[key] = value;
    else if (value === false) {
      if (key === "spellcheck" || key.startsWith("aria-")) node.setAttribute(key, "false");
    } else node.setAttribute(key, value === true ? "" : String(value));
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

const ME = "{ me { role member { name } device { name } organization { name } } }";

/**
 * Starts a page: with a kept token, checks it (`me`) and calls `onSignedIn(me)`; without one, or when the
 * hub refuses it, shows the sign-in form in `signInArea`. A hub that does not answer keeps the token and
 * is asked again.
 */
export function startPage(app, signInArea, onSignedIn) {
  const signedIn = (me) => {
    fill(signInArea);
    app.hidden = false;
    onSignedIn(me);
  };
  if (!session.token()) {
    app.hidden = true;
    signInForm(signInArea, signedIn);
    return;
  }
  gql(ME).then(signedIn, (err) => {
    if (err.code === "UNAUTHENTICATED") {
      session.signOut();
      startPage(app, signInArea, onSignedIn);
    } else {
      fill(signInArea, el("p", { class: "error", role: "alert", text: `${err.message} Trying again…` }));
      setTimeout(() => startPage(app, signInArea, onSignedIn), 3000);
    }
  });
}

/** A sign-in form: a pasted member token, checked against the hub before it is kept. */
function signInForm(container, onSignedIn) {
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
      const data = await gql(ME);
      onSignedIn(data.me);
    } catch (err) {
      session.signOut();
      error.textContent = err.code === "UNAUTHENTICATED" ? "That token is not valid (or has expired)." : err.message;
    }
  });
  fill(container, form);
}
