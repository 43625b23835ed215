/*
 * Payments embed for Webflow: prices from the payments API, Buy / Subscribe buttons that start a
 * Stripe Checkout for the signed-in Memberstack member, the payment status on the F5 page, the
 * member's account, and an admin console.
 *
 * Paste on a page (Webflow: Page settings > Custom code > Before </body> tag):
 *
 *   <script src="https://YOUR-HOST/payments-embed.js" data-api-base="https://YOUR-API" defer></script>
 *
 * Then mark elements (see docs/webflow.md):
 *   data-price-for="<product id>"         filled with the display price, e.g. "$99"
 *   data-price-name-for="<product id>"    filled with the product name
 *   data-price-description-for="<id>"     filled with the product description
 *   data-buy="<product id>"               a button starting a one-time checkout
 *                                         ("Purchased" once the member owns the product)
 *   data-subscribe="<plan id>"            a button starting a subscription checkout
 *                                         ("Current plan" for the plan the member is on)
 *   data-payment-message                  where a failure is explained to the member
 *   data-payment-status                   (F5 page) the state of the payment just made
 *   data-payment-reference                (F5 page) the Stripe Checkout Session id
 *   data-payment-history                  a list of the member's recent payments and refunds
 *   data-payments-account                 (members page) the member's account: purchases,
 *                                         plan (change, pause, resume, cancel), payment method
 *                                         and invoices, export and erasure of their data
 *   data-payments-admin                   (admin-only page, with payments-admin.js loaded
 *                                         after this script) find payments, refund, pipeline
 *                                         status and analytics
 *
 * Plain ES2017, no dependencies, no build step: a designer pastes it as is.
 */
(function () {
  "use strict";

  var DEFAULT_MESSAGE = "Payment could not be started, please retry";
  var LOGIN_MESSAGE = "Please log in to buy.";
  // The F5 page may load before the webhook was processed: poll a few times, then say so.
  var STATUS_POLLS = 10;
  var STATUS_POLL_MS = 1500;
  // Purchase states in which the member holds the product (as the service's own rule).
  var OWNED = ["paid", "partially_refunded", "processing", "disputed"];
  // Purchase states that took (or are taking) money: the rest are checkouts never paid.
  var PAID_STATES = [
    "paid",
    "partially_refunded",
    "refunded",
    "disputed",
    "switched",
    "processing",
  ];
  var ENDED_PLAN = ["canceled", "incomplete_expired"];
  var LIVE_REFUND = ["succeeded", "pending", "requires_action"];

  var script = document.currentScript;
  var attr = function (name) {
    return script ? script.getAttribute(name) : null;
  };
  var config = window.PaymentsEmbedConfig || {};
  var apiBase = String(config.apiBase || attr("data-api-base") || "").replace(/\/+$/, "");
  var defaultMessage = config.errorMessage || attr("data-error-message") || DEFAULT_MESSAGE;
  var tokenSource = typeof config.getToken === "function" ? config.getToken : memberstackToken;
  var withStyles = config.styles !== false && attr("data-styles") !== "none";
  var catalog = null;
  var uid = 0;

  /* ---- Who is signed in ------------------------------------------------------------------ */

  // Memberstack DOM 2.0 exposes window.$memberstackDom; getMemberCookie() returns the member's
  // JWT (the value of the _ms-mid cookie), which the API verifies with Memberstack's Admin API.
  function memberstackToken() {
    var ms = window.$memberstackDom;
    if (ms && typeof ms.getMemberCookie === "function") {
      return Promise.resolve(ms.getMemberCookie()).then(function (token) {
        return token || cookie("_ms-mid");
      });
    }
    // The library is not loaded (or loads later): the cookie it sets is the same token.
    return Promise.resolve(cookie("_ms-mid"));
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) === name) return decodeURIComponent(parts[i].slice(eq + 1));
    }
    return null;
  }

  function openLogin() {
    var ms = window.$memberstackDom;
    if (ms && typeof ms.openModal === "function") ms.openModal("LOGIN");
  }

  function currentToken() {
    return Promise.resolve().then(tokenSource);
  }

  /* ---- Talking to the API ---------------------------------------------------------------- */

  function api(method, path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    if (options.token) headers.Authorization = "Bearer " + options.token;
    if (options.body) headers["Content-Type"] = "application/json";
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    return fetch(apiBase + path, {
      method: method,
      headers: headers,
      body: options.body ? JSON.stringify(options.body) : undefined,
      credentials: "omit", // the token travels in the header; no cookies cross origins
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return null;
        })
        .then(function (data) {
          if (response.ok) return data;
          // The service explains every error for a person in error.message.
          var error = new Error((data && data.error && data.error.message) || defaultMessage);
          error.status = response.status;
          error.code = data && data.error && data.error.code;
          throw error;
        });
    });
  }

  // fetch() rejects with a TypeError on network failure: its text is not for a person.
  function messageOf(error, fallback) {
    if (error instanceof TypeError) return fallback || defaultMessage;
    return error.message || fallback || defaultMessage;
  }

  // One key per click: a double click or a network retry of the same click cannot start two
  // checkouts, while a deliberate second click later is a new attempt.
  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  /* ---- Small DOM helpers ------------------------------------------------------------------- */

  function each(selector, fn) {
    var nodes = document.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) fn(nodes[i]);
  }

  // el("button", {type: "button", "data-pe": "x"}, ["text", node]): text is never parsed as HTML.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = value;
      else if (name === "onclick") node.addEventListener("click", value);
      else if (name === "onsubmit") node.addEventListener("submit", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function newId(name) {
    uid += 1;
    return "pe-" + uid + "-" + name;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function fill(selector, value) {
    each(selector, function (node) {
      node.textContent = value;
    });
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/"/g, '\\"');
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    button.setAttribute("aria-busy", busy ? "true" : "false");
    button.classList.toggle("is-loading", busy);
  }

  // Run an action behind a button: busy while it runs, so a double click cannot send it twice.
  function busyWhile(button, work) {
    if (button.disabled) return Promise.resolve();
    setBusy(button, true);
    return Promise.resolve()
      .then(work)
      .then(
        function (value) {
          if (button.isConnected) setBusy(button, false);
          return value;
        },
        function (error) {
          if (button.isConnected) setBusy(button, false);
          throw error;
        }
      );
  }

  // A message line that always keeps its height, so text appearing never moves the page.
  function messageLine(key) {
    return el("p", { class: "pe-message", role: "status", "aria-live": "polite", "data-pe": key });
  }

  function tell(line, text, tone) {
    if (!line) return;
    line.textContent = text || "";
    line.setAttribute("data-tone", text ? tone || "info" : "none");
  }

  // The line above a block that says why it is not drawn yet: gone once the block shows.
  function gate(line, text, tone) {
    tell(line, text, tone);
    line.hidden = !text;
  }

  // Every action starts by clearing what the previous one said.
  function clearMessages(root) {
    var lines = root.querySelectorAll(".pe-message");
    for (var i = 0; i < lines.length; i++) tell(lines[i], "");
  }

  /* ---- Money and dates --------------------------------------------------------------------- */

  var SYMBOLS = { usd: "$", eur: "€", gbp: "£" };

  // The service's own format: "$99", "$49.50", "-$10".
  function money(amount, currency) {
    if (amount === null || amount === undefined) return "";
    var cur = String(currency || "usd").toLowerCase();
    var sign = amount < 0 ? "-" : "";
    var abs = Math.abs(amount);
    var whole = Math.floor(abs / 100);
    var cents = abs % 100;
    var number =
      whole.toLocaleString("en-US") + (cents ? "." + (cents < 10 ? "0" : "") + cents : "");
    return SYMBOLS[cur] ? sign + SYMBOLS[cur] + number : sign + number + " " + cur.toUpperCase();
  }

  function day(iso) {
    if (!iso) return "";
    var when = new Date(iso);
    if (isNaN(when.getTime())) return "";
    return when.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }

  function isoDay(date) {
    var pad = function (n) {
      return (n < 10 ? "0" : "") + n;
    };
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate());
  }

  // "10", "10.5", "$10.50" -> cents; null for anything else.
  function parseMoney(text) {
    var cleaned = String(text || "").replace(/[$,\s]/g, "");
    if (!/^\d+(\.\d{1,2})?$/.test(cleaned)) return null;
    var parts = cleaned.split(".");
    var cents = parts[1] ? (parts[1] + "0").slice(0, 2) : "00";
    return parseInt(parts[0], 10) * 100 + parseInt(cents, 10);
  }

  /* ---- Prices ------------------------------------------------------------------------------ */

  function productName(id) {
    return catalog && catalog[id] ? catalog[id].name : id || "Your purchase";
  }

  function plans() {
    return Object.keys(catalog || {})
      .map(function (id) {
        return catalog[id];
      })
      .filter(function (p) {
        return p.mode === "subscription";
      });
  }

  function showPrices(products) {
    products.forEach(function (product) {
      var id = cssEscape(product.id);
      fill('[data-price-for="' + id + '"]', product.display_price);
      fill('[data-price-name-for="' + id + '"]', product.name);
      fill('[data-price-description-for="' + id + '"]', product.description || "");
    });
  }

  function loadPrices() {
    return api("GET", "/v1/pricing").then(
      function (data) {
        catalog = {};
        data.products.forEach(function (p) {
          catalog[p.id] = p;
        });
        showPrices(data.products);
        document.documentElement.setAttribute("data-payments-prices", "loaded");
        document.dispatchEvent(new CustomEvent("payments:prices", { detail: data.products }));
        return catalog;
      },
      function () {
        // Leave the designer's placeholders: a wrong price is worse than none.
        document.documentElement.setAttribute("data-payments-prices", "failed");
        return null;
      }
    );
  }

  /* ---- Buy and Subscribe ------------------------------------------------------------------- */

  // The message element next to the button (same card or section), else the page's first one.
  function messageFor(button) {
    for (var node = button.parentElement; node; node = node.parentElement) {
      var found = node.querySelector("[data-payment-message]");
      if (found) return found;
    }
    return null;
  }

  function say(button, text) {
    var target = button ? messageFor(button) : document.querySelector("[data-payment-message]");
    if (!target) return;
    target.textContent = text || "";
    target.hidden = !text;
    target.setAttribute("role", "alert");
  }

  // Clear every product card's message: a new click is a new attempt.
  function clearProductMessages() {
    each("[data-payment-message]", function (node) {
      node.textContent = "";
      node.hidden = true;
    });
  }

  function startCheckout(button, path, product) {
    if (button.disabled) return;
    clearProductMessages();
    setBusy(button, true);
    var key = newIdempotencyKey();
    currentToken()
      .then(function (token) {
        if (!token) {
          var error = new Error(LOGIN_MESSAGE);
          error.code = "not_signed_in";
          throw error;
        }
        return api("POST", path, { token: token, body: { product: product }, idempotencyKey: key });
      })
      .then(function (session) {
        // Stay disabled: the page is about to leave for Stripe's hosted checkout.
        window.location.assign(session.url);
      })
      .catch(function (error) {
        setBusy(button, false);
        if (error.code === "not_signed_in") openLogin();
        say(button, messageOf(error));
      });
  }

  function onClick(event) {
    var button = event.target.closest ? event.target.closest("[data-buy],[data-subscribe]") : null;
    if (!button) return;
    event.preventDefault();
    if (button.getAttribute("data-owned")) return;
    if (button.hasAttribute("data-buy")) {
      startCheckout(button, "/v1/checkout/sessions", button.getAttribute("data-buy"));
    } else {
      startCheckout(button, "/v1/subscriptions", button.getAttribute("data-subscribe"));
    }
  }

  // Back from Stripe, browsers restore the page from their cache with the button still
  // disabled: re-enable every button when that happens.
  function onPageShow(event) {
    if (!event.persisted) return;
    each("[data-buy],[data-subscribe]", function (button) {
      if (!button.getAttribute("data-owned")) setBusy(button, false);
    });
  }

  /* ---- What the member owns ------------------------------------------------------------------ */

  // Everything the account and the product buttons show: the member's own data (purchases and
  // refunds with their products and states, read under row-level security as the member) and
  // their subscriptions. The payment history (/v1/me/payments) has one row per Stripe event and
  // cannot tell which product a refund belongs to; these can.
  function loadMemberState(token) {
    return Promise.all([
      api("GET", "/v1/me/data", { token: token }),
      api("GET", "/v1/me/subscriptions", { token: token }),
    ]).then(function (answers) {
      return {
        token: token,
        purchases: answers[0].purchases || [],
        refunds: answers[0].refunds || [],
        subscriptions: answers[1].subscriptions || [],
      };
    });
  }

  function livePlans(state) {
    return state.subscriptions.filter(function (s) {
      return ENDED_PLAN.indexOf(s.status) < 0;
    });
  }

  function ownership(state) {
    var owned = {};
    (state ? state.purchases : []).forEach(function (p) {
      if (OWNED.indexOf(p.status) < 0) return;
      owned[p.product] = p.status === "processing" ? "Payment processing" : "Purchased";
    });
    (state ? livePlans(state) : []).forEach(function (s) {
      if (s.product) owned[s.product] = "Current plan";
    });
    return owned;
  }

  // Buy / Subscribe buttons say what the member already has, and cannot start a second one.
  function markProductButtons(state) {
    var owned = ownership(state);
    each("[data-buy],[data-subscribe]", function (button) {
      var id = button.getAttribute("data-buy") || button.getAttribute("data-subscribe");
      if (!button.hasAttribute("data-label")) button.setAttribute("data-label", button.textContent);
      if (owned[id]) {
        button.textContent = owned[id];
        button.setAttribute("data-owned", owned[id]);
        button.disabled = true;
        button.classList.add("is-owned");
      } else if (button.getAttribute("data-owned")) {
        button.textContent = button.getAttribute("data-label");
        button.removeAttribute("data-owned");
        button.disabled = false;
        button.classList.remove("is-owned");
      }
    });
  }

  /* ---- Payment status (F5) and history ------------------------------------------------------ */

  function setState(node, state, text) {
    node.setAttribute("data-payment-state", state);
    node.textContent = text;
  }

  function paymentsOf(token) {
    return api("GET", "/v1/me/payments?limit=50", { token: token }).then(function (page) {
      return page.payments || [];
    });
  }

  // The payment log has one row per Stripe event; the session's completed row tells the outcome.
  function sessionState(rows, sessionId) {
    var completed = rows.filter(function (row) {
      return row.stripe_object_id === sessionId && /^checkout\.session\./.test(row.event_type);
    });
    var paid = completed.filter(function (row) {
      return row.status === "paid" || row.status === "no_payment_required";
    })[0];
    if (paid) return { state: "paid", row: paid };
    var failed = completed.filter(function (row) {
      return /async_payment_failed|expired/.test(row.event_type);
    })[0];
    if (failed) return { state: "failed", row: failed };
    return { state: "processing", row: completed[0] || null };
  }

  function watchStatus(node) {
    var sessionId = new URLSearchParams(window.location.search).get("session_id");
    if (!sessionId) {
      setState(node, "unknown", "We could not find your payment reference.");
      return;
    }
    node.setAttribute("data-session-id", sessionId);
    // The reference lets support find the payment even before it shows up here.
    fill("[data-payment-reference]", sessionId);
    setState(node, "processing", "Payment received by Stripe, confirming it now…");
    var attempts = 0;
    var poll = function () {
      attempts += 1;
      Promise.resolve()
        .then(tokenSource)
        .then(function (token) {
          if (!token) throw new Error(LOGIN_MESSAGE);
          return paymentsOf(token);
        })
        .then(function (rows) {
          return sessionState(rows, sessionId);
        })
        .catch(function () {
          return { state: "processing", row: null }; // unreachable or not deployed yet: retry
        })
        .then(function (found) {
          if (found.state === "paid") {
            var row = found.row;
            setState(
              node,
              "paid",
              "Payment confirmed: " + productName(row.product) + ", " + row.display_amount + "."
            );
            each("[data-payment-history]", showHistory);
            document.dispatchEvent(new CustomEvent("payments:paid", { detail: row }));
          } else if (found.state === "failed") {
            setState(node, "failed", "The payment did not go through. Nothing was charged.");
          } else if (attempts < STATUS_POLLS) {
            window.setTimeout(poll, STATUS_POLL_MS);
          } else {
            setState(
              node,
              "processing",
              "Your payment is still being confirmed: reload this page in a minute to see it."
            );
          }
        });
    };
    poll();
  }

  // The log holds one row per Stripe event; a person wants one line per payment or refund.
  // Started, declined and expired checkouts are not payments, and a refund appears in several
  // rows (requested, created, updated, the charge's running total): one line per refund id.
  function historyLines(rows) {
    var lines = [];
    var refundsSeen = {};
    rows.forEach(function (row) {
      var paid =
        (row.event_type === "checkout.session.completed" && row.status === "paid") ||
        row.event_type === "checkout.session.async_payment_succeeded";
      if (paid) {
        lines.push(
          historyItem("paid", ["Paid", productName(row.product), row.display_amount], row)
        );
        return;
      }
      var refundId = row.stripe_object_id || "";
      var isRefund = /^refund\./.test(row.event_type) && refundId.indexOf("re_") === 0;
      if (!isRefund || refundsSeen[refundId]) return;
      refundsSeen[refundId] = true; // rows come newest first: the first one is the latest state
      if (LIVE_REFUND.indexOf(row.status) < 0) return;
      var label = row.status === "succeeded" ? "Refunded" : "Refund on its way";
      lines.push(historyItem("refunded", [label, row.display_amount], row));
    });
    return lines;
  }

  function historyItem(state, parts, row) {
    var item = document.createElement("li");
    item.setAttribute("data-payment-state", state);
    item.textContent = parts
      .concat([new Date(row.created_at).toLocaleString()])
      .filter(Boolean)
      .join(" · ");
    return item;
  }

  function showHistory(list) {
    currentToken()
      .then(function (token) {
        return token ? paymentsOf(token) : [];
      })
      .then(function (rows) {
        clear(list);
        historyLines(rows)
          .slice(0, 6)
          .forEach(function (item) {
            list.appendChild(item);
          });
        list.setAttribute("data-payment-count", String(list.children.length));
      })
      .catch(function () {
        list.setAttribute("data-payment-count", "unavailable");
      });
  }

  /* ---- Confirmation dialogs ----------------------------------------------------------------- */

  // A modal <dialog>: keeps focus inside, Escape cancels, and focus returns to the control that
  // opened it. Resolves with the chosen action's value, or null when cancelled.
  function confirmDialog(options) {
    var opener = document.activeElement;
    var titleId = newId("dialog-title");
    var dialog = el("dialog", { class: "pe-dialog", "aria-labelledby": titleId });
    dialog.appendChild(el("h3", { id: titleId, text: options.title }));
    (options.body || []).forEach(function (line) {
      dialog.appendChild(typeof line === "string" ? el("p", { text: line }) : line);
    });
    var row = el("div", { class: "pe-actions" });
    var cancel = el("button", {
      type: "button",
      class: "pe-button pe-secondary",
      "data-pe": "dialog-cancel",
      text: options.cancelLabel || "Go back",
    });
    options.actions.forEach(function (action) {
      row.appendChild(
        el("button", {
          type: "button",
          class: "pe-button" + (action.danger ? " pe-danger" : ""),
          "data-pe": "dialog-" + action.value,
          text: action.label,
          onclick: function () {
            dialog.close(action.value);
          },
        })
      );
    });
    cancel.addEventListener("click", function () {
      dialog.close("");
    });
    row.appendChild(cancel);
    dialog.appendChild(row);
    document.body.appendChild(dialog);
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function () {
        var value = dialog.returnValue || null;
        dialog.remove();
        if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
        resolve(value);
      });
      dialog.showModal();
      // The safe choice has the focus: Enter on a destructive dialog never destroys.
      cancel.focus();
    });
  }

  /* ---- Member account ------------------------------------------------------------------------ */

  var PLAN_WORDS = {
    active: "Active",
    trialing: "Trial",
    past_due: "Payment overdue: please update your payment method",
    unpaid: "Unpaid: please update your payment method",
    incomplete: "Waiting for the first payment",
    paused: "Paused",
  };

  var PURCHASE_WORDS = {
    paid: "Paid",
    partially_refunded: "Partly refunded",
    refunded: "Refunded",
    disputed: "Disputed with your bank",
    switched: "Switched to another service, refunded",
    processing: "Payment processing",
  };

  function accountSection(root, key, title) {
    var headingId = newId(key);
    var body = el("div", { class: "pe-section-body", "data-pe": key + "-body" });
    var section = el(
      "section",
      { class: "pe-section", "data-pe": key, "aria-labelledby": headingId },
      [
        el("h3", { id: headingId, class: "pe-heading", text: title }),
        body,
        messageLine(key + "-message"),
      ]
    );
    root.appendChild(section);
    return section;
  }

  function mountAccount(block) {
    clear(block);
    block.classList.add("pe-account");
    var gateLine = messageLine("account-gate");
    block.appendChild(gateLine);
    var view = el("div", { "data-pe": "account-view", hidden: true });
    block.appendChild(view);
    accountSection(view, "plan", "Your plan");
    accountSection(view, "purchases", "Your purchases");
    accountSection(view, "portal", "Payment method and invoices");
    accountSection(view, "data", "Your data");
    block._pe = { gate: gateLine, view: view, state: null };
    return block._pe;
  }

  function part(block, key) {
    return block.querySelector('[data-pe="' + key + '"]');
  }

  function loadAccount(block) {
    var mounted = block._pe || mountAccount(block);
    block.setAttribute("data-account-state", "loading");
    if (!mounted.state) gate(mounted.gate, "Loading your account…");
    return currentToken()
      .then(function (token) {
        if (!token) {
          mounted.state = null;
          mounted.view.hidden = true;
          gate(mounted.gate, "Please sign in to see your account.");
          block.setAttribute("data-account-state", "signed-out");
          markProductButtons(null);
          return null;
        }
        return loadMemberState(token).then(function (state) {
          mounted.state = state;
          gate(mounted.gate, "");
          mounted.view.hidden = false;
          renderAccount(block);
          block.setAttribute("data-account-state", "ready");
          return state;
        });
      })
      .catch(function (error) {
        mounted.view.hidden = true;
        tell(
          mounted.gate,
          messageOf(error, "Your account could not be loaded. Please retry."),
          "error"
        );
        block.setAttribute("data-account-state", "failed");
        return null;
      });
  }

  function renderAccount(block) {
    var state = block._pe.state;
    renderPlans(block, state);
    renderPurchases(block, state);
    renderPortal(block);
    renderData(block);
    markProductButtons(state);
  }

  // After a re-render the control that had the focus is gone: put it on its replacement.
  function keepFocus(block, render) {
    var active = document.activeElement;
    var key = active && block.contains(active) ? active.getAttribute("data-pe") : null;
    render();
    var again = key ? block.querySelector('[data-pe="' + key + '"]:not([disabled])') : null;
    if (again) again.focus();
  }

  function planButton(label, key, onclick) {
    return el("button", {
      type: "button",
      class: "pe-button",
      "data-pe": key,
      text: label,
      onclick: onclick,
    });
  }

  function renderPlans(block, state) {
    var body = part(block, "plan-body");
    clear(body);
    var live = livePlans(state);
    if (!live.length) {
      body.appendChild(el("p", { "data-pe": "plan-none", text: "You have no monthly plan." }));
      return;
    }
    live.forEach(function (sub) {
      body.appendChild(planCard(block, sub));
    });
  }

  function planStatus(sub) {
    if (sub.cancel_at_period_end) {
      return "Ends on " + day(sub.current_period_end) + ": it will not renew.";
    }
    if (sub.paused) {
      return (
        "Paused: the plan is on hold and no payment is taken until you resume" +
        (sub.resumes_at ? " (on " + day(sub.resumes_at) + ")." : ".")
      );
    }
    return PLAN_WORDS[sub.status] || sub.status;
  }

  function planCard(block, sub) {
    var product = catalog && catalog[sub.product];
    var facts = el("dl", { class: "pe-facts" }, [
      el("dt", { text: "Plan" }),
      el("dd", { "data-pe": "plan-name", text: productName(sub.product) }),
      el("dt", { text: "Status" }),
      el("dd", { "data-pe": "plan-status", "data-status": sub.status, text: planStatus(sub) }),
      el("dt", { text: "Amount" }),
      el("dd", { "data-pe": "plan-amount", text: product ? product.display_price : "" }),
    ]);
    if (!sub.cancel_at_period_end && !sub.paused && sub.current_period_end) {
      facts.appendChild(el("dt", { text: "Next payment" }));
      facts.appendChild(
        el("dd", {
          "data-pe": "plan-next",
          text:
            (product ? product.display_price.replace(/\/.*$/, "") + " on " : "") +
            day(sub.current_period_end),
        })
      );
    }
    var actions = el("div", { class: "pe-actions" });
    var others = plans().filter(function (p) {
      return p.id !== sub.product;
    });
    // A paused plan is not changed (the service answers 409): resume it first.
    if (others.length && !sub.cancel_at_period_end && !sub.paused) {
      var selectId = newId("plan-choice");
      var select = el(
        "select",
        { id: selectId, "data-pe": "plan-choice" },
        others.map(function (p) {
          return el("option", { value: p.id, text: p.name + " (" + p.display_price + ")" });
        })
      );
      actions.appendChild(
        el("span", { class: "pe-field" }, [
          el("label", { for: selectId, text: "Change to" }),
          select,
        ])
      );
      actions.appendChild(
        planButton("Preview change", "plan-preview", function (event) {
          previewChange(block, sub, select.value, event.currentTarget);
        })
      );
    }
    if (sub.paused || sub.cancel_at_period_end) {
      actions.appendChild(
        planButton(
          sub.cancel_at_period_end ? "Keep my plan" : "Resume payments",
          "plan-resume",
          function (event) {
            planAction(block, sub, "resume", {}, event.currentTarget);
          }
        )
      );
    } else {
      actions.appendChild(
        planButton("Pause payments", "plan-pause", function (event) {
          planAction(block, sub, "pause", {}, event.currentTarget);
        })
      );
    }
    if (!sub.cancel_at_period_end) {
      actions.appendChild(
        planButton("Cancel plan…", "plan-cancel", function (event) {
          cancelPlan(block, sub, event.currentTarget);
        })
      );
    }
    return el("div", { class: "pe-card", "data-pe": "plan-card", "data-subscription": sub.id }, [
      facts,
      actions,
    ]);
  }

  var PLAN_DONE = {
    pause: function () {
      return (
        "Your plan is on hold: nothing is charged until you resume, " +
        "and the plan's service stops meanwhile."
      );
    },
    resume: function (view) {
      return view.current_period_end
        ? "Your plan is running again. Next payment on " + day(view.current_period_end) + "."
        : "Your plan is running again.";
    },
    cancel_end: function (view) {
      return (
        "Your plan will end on " +
        day(view.current_period_end) +
        ". You keep it until then, and nothing more is charged."
      );
    },
    cancel_now: function () {
      return "Your plan has ended today. Nothing more will be charged.";
    },
  };

  function replacePlan(block, view) {
    var state = block._pe.state;
    state.subscriptions = state.subscriptions.map(function (s) {
      return s.id === view.id ? view : s;
    });
    keepFocus(block, function () {
      renderPlans(block, state);
    });
    markProductButtons(state);
  }

  function planAction(block, sub, action, body, button, doneKey) {
    clearMessages(block);
    var line = part(block, "plan-message");
    var state = block._pe.state;
    return busyWhile(button, function () {
      return api("POST", "/v1/subscriptions/" + encodeURIComponent(sub.id) + "/" + action, {
        token: state.token,
        body: body,
        idempotencyKey: newIdempotencyKey(),
      });
    }).then(
      function (view) {
        if (!view) return;
        replacePlan(block, view);
        tell(line, PLAN_DONE[doneKey || action](view), "success");
      },
      function (error) {
        tell(line, messageOf(error, "That did not work. Please retry."), "error");
      }
    );
  }

  function cancelPlan(block, sub, button) {
    clearMessages(block);
    var until = day(sub.current_period_end);
    confirmDialog({
      title: "Cancel " + productName(sub.product) + "?",
      body: [
        "At the end of the period: you keep the plan until " +
          until +
          ", then it stops. Nothing more is charged, and you can change your mind until then.",
        "Now: the plan stops today. The rest of this period is not refunded.",
      ],
      actions: [
        { value: "end", label: "Cancel on " + until },
        { value: "now", label: "Cancel now", danger: true },
      ],
      cancelLabel: "Keep my plan",
    }).then(function (choice) {
      if (!choice) return;
      var atEnd = choice === "end";
      planAction(
        block,
        sub,
        "cancel",
        { at_period_end: atEnd },
        button,
        atEnd ? "cancel_end" : "cancel_now"
      );
    });
  }

  function previewChange(block, sub, product, button) {
    clearMessages(block);
    var line = part(block, "plan-message");
    var state = block._pe.state;
    busyWhile(button, function () {
      return api("POST", "/v1/subscriptions/" + encodeURIComponent(sub.id) + "/preview-change", {
        token: state.token,
        body: { product: product },
      });
    }).then(
      function (preview) {
        if (preview) confirmChange(block, sub, preview, button);
      },
      function (error) {
        tell(line, messageOf(error, "The change could not be priced. Please retry."), "error");
      }
    );
  }

  function confirmChange(block, sub, preview, button) {
    var currency = preview.currency;
    var lines = el(
      "ul",
      { class: "pe-lines", "data-pe": "preview-lines" },
      (preview.lines || []).map(function (line) {
        return el("li", { text: line.description + ": " + money(line.amount, currency) });
      })
    );
    var body = [
      el("dl", { class: "pe-facts", "data-pe": "preview" }, [
        el("dt", { text: "Due now" }),
        el("dd", { "data-pe": "preview-due-now", text: money(preview.amount_due_now, currency) }),
        el("dt", { text: "Next renewal" }),
        el("dd", {
          "data-pe": "preview-next",
          text:
            money(preview.next_renewal_amount, currency) +
            (sub.current_period_end ? " on " + day(sub.current_period_end) : ""),
        }),
        el("dt", { text: "Of which for the change" }),
        el("dd", {
          "data-pe": "preview-proration",
          text: money(preview.proration_amount, currency),
        }),
      ]),
      lines,
    ];
    if (preview.quote_expires_at) {
      body.push(
        "These amounts hold until " +
          new Date(preview.quote_expires_at).toLocaleTimeString(undefined, {
            hour: "2-digit",
            minute: "2-digit",
          }) +
          "."
      );
    }
    confirmDialog({
      title: "Change to " + productName(preview.product) + "?",
      body: body,
      actions: [{ value: "change", label: "Confirm change" }],
      cancelLabel: "Keep " + productName(sub.product),
    }).then(function (choice) {
      if (choice !== "change") return;
      // The service decides the proration; the quote makes it charge exactly what was shown.
      var change = { product: preview.product };
      if (preview.quote) change.quote = preview.quote;
      var line = part(block, "plan-message");
      var state = block._pe.state;
      busyWhile(button, function () {
        return api("POST", "/v1/subscriptions/" + encodeURIComponent(sub.id) + "/change", {
          token: state.token,
          body: change,
          idempotencyKey: newIdempotencyKey(),
        });
      }).then(
        function (view) {
          if (!view) return;
          replacePlan(block, view);
          tell(line, "Your plan is now " + productName(view.product) + ".", "success");
        },
        function (error) {
          tell(line, messageOf(error, "The plan could not be changed. Please retry."), "error");
        }
      );
    });
  }

  function accountLines(state) {
    var byIntent = {};
    var lines = [];
    state.purchases.forEach(function (p) {
      // A plan is shown, with its payments, in the plan section.
      if (p.mode === "subscription" || PAID_STATES.indexOf(p.status) < 0) return;
      if (p.payment_intent_id) byIntent[p.payment_intent_id] = p;
      lines.push({ kind: "payment", at: p.created_at, purchase: p });
    });
    state.refunds.forEach(function (r) {
      if (LIVE_REFUND.indexOf(r.status) < 0) return;
      lines.push({
        kind: "refund",
        at: r.created_at,
        refund: r,
        purchase: byIntent[r.payment_intent_id],
      });
    });
    lines.sort(function (a, b) {
      return String(b.at).localeCompare(String(a.at));
    });
    return lines;
  }

  function renderPurchases(block, state) {
    var body = part(block, "purchases-body");
    clear(body);
    var lines = accountLines(state);
    if (!lines.length) {
      body.appendChild(el("p", { "data-pe": "purchases-none", text: "No purchases yet." }));
      return;
    }
    var list = el("ul", { class: "pe-list", "data-pe": "purchases-list" });
    lines.forEach(function (line) {
      if (line.kind === "payment") {
        var p = line.purchase;
        list.appendChild(
          el("li", { "data-kind": "payment", "data-product": p.product, "data-status": p.status }, [
            el("strong", { text: productName(p.product) }),
            " · " + money(p.amount, p.currency) + " · " + day(p.created_at) + " · ",
            el("span", { class: "pe-state", text: PURCHASE_WORDS[p.status] || p.status }),
          ])
        );
      } else {
        var r = line.refund;
        var what = line.purchase ? " for " + productName(line.purchase.product) : "";
        list.appendChild(
          el("li", { "data-kind": "refund", "data-status": r.status }, [
            el("strong", { text: "Refund of " + money(r.amount, r.currency) }),
            what + " · " + day(r.created_at) + (r.status === "succeeded" ? "" : " · on its way"),
          ])
        );
      }
    });
    body.appendChild(list);
    body.appendChild(
      el("p", {
        class: "pe-note",
        text: "Plan payments and invoices are under Payment method and invoices.",
      })
    );
  }

  function renderPortal(block) {
    var body = part(block, "portal-body");
    clear(body);
    body.appendChild(
      el("p", {
        text: "Update your card and download invoices on Stripe's secure page. You come back here afterwards.",
      })
    );
    body.appendChild(
      el("div", { class: "pe-actions" }, [
        planButton("Payment method and invoices", "portal-open", function (event) {
          openPortal(block, event.currentTarget);
        }),
      ])
    );
  }

  function openPortal(block, button) {
    clearMessages(block);
    var line = part(block, "portal-message");
    var state = block._pe.state;
    var key = newIdempotencyKey();
    if (button.disabled) return;
    setBusy(button, true);
    api("POST", "/v1/billing-portal", { token: state.token, idempotencyKey: key }).then(
      function (session) {
        // Stay busy: the page is leaving for Stripe.
        window.location.assign(session.url);
      },
      function (error) {
        setBusy(button, false);
        tell(
          line,
          messageOf(error, "The payment portal could not be opened. Please retry."),
          "error"
        );
      }
    );
  }

  function renderData(block) {
    var body = part(block, "data-body");
    clear(body);
    body.appendChild(
      el("p", { text: "Download everything we hold about you, or ask us to erase it." })
    );
    body.appendChild(
      el("div", { class: "pe-actions" }, [
        planButton("Export my data", "data-export", function (event) {
          exportData(block, event.currentTarget);
        }),
        el("button", {
          type: "button",
          class: "pe-button pe-danger",
          "data-pe": "data-erase",
          text: "Erase my data…",
          onclick: function (event) {
            eraseData(block, event.currentTarget);
          },
        }),
      ])
    );
  }

  function exportData(block, button) {
    clearMessages(block);
    var line = part(block, "data-message");
    var state = block._pe.state;
    busyWhile(button, function () {
      return api("GET", "/v1/me/data", { token: state.token });
    }).then(
      function (data) {
        var name = "my-data-" + isoDay(new Date()) + ".json";
        var blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
        var link = el("a", { href: URL.createObjectURL(blob), download: name, hidden: true });
        document.body.appendChild(link);
        link.click();
        link.remove();
        window.setTimeout(function () {
          URL.revokeObjectURL(link.href);
        }, 10000);
        tell(line, "Your data was downloaded as " + name + ".", "success");
      },
      function (error) {
        tell(line, messageOf(error, "Your data could not be exported. Please retry."), "error");
      }
    );
  }

  function eraseData(block, button) {
    clearMessages(block);
    confirmDialog({
      title: "Erase your data?",
      body: [
        "We remove your member id and notes from our records. Payments stay in our accounts under an anonymous reference, as the law requires; Stripe keeps its own records.",
        "This cannot be undone.",
      ],
      actions: [{ value: "erase", label: "Erase my data", danger: true }],
      cancelLabel: "Keep my data",
    }).then(function (choice) {
      if (choice !== "erase") return;
      var line = part(block, "data-message");
      var state = block._pe.state;
      busyWhile(button, function () {
        return api("DELETE", "/v1/me/data", { token: state.token });
      }).then(
        function (receipt) {
          if (!receipt) return;
          return loadAccount(block).then(function () {
            tell(part(block, "data-message"), "Your data was erased.", "success");
            var again = part(block, "data-erase");
            if (again) again.focus();
          });
        },
        function (error) {
          var text = messageOf(error, "Your data could not be erased. Please retry.");
          tell(
            line,
            error.status === 409 ? "We cannot erase your data yet. " + text : text,
            "error"
          );
        }
      );
    });
  }

  /* ---- Styles ------------------------------------------------------------------------------- */

  // A plain default look for the account and admin blocks, in the page's own font and colours.
  // Every rule is on a pe- class, so the site's design wins wherever it says more; turn it off
  // with data-styles="none" on the script tag.
  var CSS_TEXT = [
    ".pe-account,.pe-admin{display:grid;gap:1.25rem;max-width:60rem}",
    ".pe-account [hidden],.pe-admin [hidden]{display:none!important}",
    '[data-pe="account-view"],[data-pe="admin-view"]{display:grid;gap:1.75rem}',
    ".pe-section{display:grid;gap:.6rem}",
    ".pe-heading{margin:0;font-size:1.1em}",
    ".pe-message{margin:0;min-height:1.5em;line-height:1.5em}",
    '.pe-message[data-tone="error"]{color:#b42318}',
    '.pe-message[data-tone="success"]{color:#137a3f}',
    ".pe-actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}",
    ".pe-field{display:grid;gap:.25rem;font-size:.92em}",
    ".pe-field input,.pe-field select,.pe-field textarea{font:inherit;padding:.45rem .55rem;border:1px solid #c9cdd8;border-radius:6px;min-width:10rem}",
    ".pe-form{display:flex;flex-wrap:wrap;gap:.75rem;align-items:end}",
    ".pe-button{font:inherit;cursor:pointer;border:1px solid transparent;border-radius:6px;padding:.5rem .9rem;background:#1f2430;color:#fff;position:relative}",
    ".pe-button.pe-secondary{background:#eef0f6;color:#1f2430;border-color:#c9cdd8}",
    ".pe-button.pe-danger{background:#b42318}",
    ".pe-button:disabled{cursor:not-allowed;opacity:.6}",
    // Loading keeps the label's size (no layout shift) and draws a spinner over it.
    ".pe-button.is-loading{color:transparent;cursor:progress}",
    ".pe-button.is-loading::after{content:'';position:absolute;left:50%;top:50%;width:1em;height:1em;margin:-.5em 0 0 -.5em;border:2px solid #fff;border-right-color:transparent;border-radius:50%;animation:pe-spin .7s linear infinite}",
    ".pe-button.pe-secondary.is-loading::after{border-color:#1f2430;border-right-color:transparent}",
    "@keyframes pe-spin{to{transform:rotate(360deg)}}",
    ".pe-account :focus-visible,.pe-admin :focus-visible,.pe-dialog :focus-visible{outline:3px solid #4f46e5;outline-offset:2px}",
    ".pe-facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;margin:0}",
    ".pe-facts dt{color:#5d6475}.pe-facts dd{margin:0}",
    ".pe-card{border:1px solid #e3e6ee;border-radius:10px;padding:1rem;display:grid;gap:.8rem}",
    ".pe-list{list-style:none;margin:0;padding:0}.pe-list li{padding:.45rem 0;border-bottom:1px solid #e3e6ee}",
    ".pe-note{color:#5d6475;font-size:.9em;margin:0}",
    ".pe-table-wrap{overflow-x:auto}",
    ".pe-table{border-collapse:collapse;width:100%;font-size:.92em}",
    ".pe-table caption{text-align:left;color:#5d6475;padding:.3rem 0}",
    ".pe-table th,.pe-table td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e3e6ee;vertical-align:top}",
    ".pe-table .pe-num{text-align:right;font-variant-numeric:tabular-nums}",
    ".pe-visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".pe-dialog{border:0;border-radius:12px;padding:1.25rem 1.5rem;max-width:34rem;box-shadow:0 12px 40px rgba(0,0,0,.25)}",
    ".pe-dialog::backdrop{background:rgba(15,18,30,.45)}",
    ".pe-dialog h3{margin-top:0}",
    ".pe-lines{margin:.25rem 0;padding-left:1.2rem;font-size:.92em}",
    ".pe-chart{width:100%;max-width:45rem;height:auto;font:12px system-ui,sans-serif}",
    ".pe-chart .pe-grid{stroke:#e3e6ee}.pe-chart .pe-zero{stroke:#555}",
    ".pe-chart .pe-axis,.pe-chart .pe-legend,.pe-chart .pe-chart-empty{fill:#3d4354}",
    ".pe-chart .pe-bar-label{fill:#1f2430;font-size:10px}",
  ].join("\n");

  function injectStyles() {
    if (!withStyles || document.querySelector("style[data-payments-embed]")) return;
    if (!document.querySelector("[data-payments-account],[data-payments-admin]")) return;
    var style = document.createElement("style");
    style.setAttribute("data-payments-embed", "");
    style.textContent = CSS_TEXT;
    document.head.appendChild(style);
  }

  /* ---- Start -------------------------------------------------------------------------------- */

  // What the product buttons can know without an account block on the page.
  function refreshOwnership() {
    if (!document.querySelector("[data-buy],[data-subscribe]")) return Promise.resolve();
    if (document.querySelector("[data-payments-account]")) return Promise.resolve();
    return currentToken()
      .then(function (token) {
        return token ? loadMemberState(token) : null;
      })
      .then(markProductButtons, function () {
        // Unknown: leave the buttons as the designer made them; checkout refuses a repeat.
      });
  }

  // Blocks drawn by companion scripts (payments-admin.js): selector -> loader(element).
  var blocks = [];
  var started = false;

  function addBlock(selector, load) {
    blocks.push({ selector: selector, load: load });
    // Registered after the first refresh went by (the script loaded late): draw it now.
    if (started) each(selector, load);
  }

  // Prices, history, ownership, the account and other blocks again, e.g. after the member
  // signed in without a page load.
  function refresh() {
    return loadPrices().then(function () {
      started = true;
      each("[data-payment-history]", showHistory);
      var pending = [refreshOwnership()];
      each("[data-payments-account]", function (block) {
        pending.push(loadAccount(block));
      });
      blocks.forEach(function (registered) {
        each(registered.selector, function (block) {
          pending.push(registered.load(block));
        });
      });
      return Promise.all(pending);
    });
  }

  function init() {
    if (!apiBase) {
      // Same origin as the page, e.g. the local demo served by `make dev`.
      apiBase = window.location.origin;
    }
    injectStyles();
    document.addEventListener("click", onClick);
    window.addEventListener("pageshow", onPageShow);
    // Names in the status and history need the catalog, so they wait for the prices.
    refresh().then(function () {
      each("[data-payment-status]", watchStatus);
    });
  }

  window.PaymentsEmbed = {
    // Replace how the member token is found (the local demo injects the stand-in's token).
    setTokenSource: function (fn) {
      tokenSource = fn;
    },
    refresh: refresh,
    // For companion scripts (payments-admin.js): the same API client, widgets and words, so
    // every block behaves alike.
    addBlock: addBlock,
    kit: {
      api: api,
      busyWhile: busyWhile,
      clear: clear,
      clearMessages: clearMessages,
      confirmDialog: confirmDialog,
      currentToken: currentToken,
      day: day,
      el: el,
      gate: gate,
      isoDay: isoDay,
      messageLine: messageLine,
      messageOf: messageOf,
      money: money,
      newId: newId,
      newIdempotencyKey: newIdempotencyKey,
      parseMoney: parseMoney,
      part: part,
      productName: productName,
      purchaseWords: PURCHASE_WORDS,
      tell: tell,
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
