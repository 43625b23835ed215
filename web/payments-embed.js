/*
 * Payments embed for Webflow: prices from the payments API, Buy / Subscribe buttons that start a
 * Stripe Checkout for the signed-in Memberstack member, and the payment status on the F5 page.
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
 *   data-subscribe="<plan id>"            a button starting a subscription checkout
 *   data-payment-message                  where a failure is explained to the member
 *   data-payment-status                   (F5 page) the state of the payment just made
 *   data-payment-reference                (F5 page) the Stripe Checkout Session id
 *   data-payment-history                  a list of the member's recent payments
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

  var script = document.currentScript;
  var attr = function (name) {
    return script ? script.getAttribute(name) : null;
  };
  var config = window.PaymentsEmbedConfig || {};
  var apiBase = String(config.apiBase || attr("data-api-base") || "").replace(/\/+$/, "");
  var defaultMessage = config.errorMessage || attr("data-error-message") || DEFAULT_MESSAGE;
  var tokenSource = typeof config.getToken === "function" ? config.getToken : memberstackToken;
  var catalog = null;

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

  // One key per click: a double click or a network retry of the same click cannot start two
  // checkouts, while a deliberate second click later is a new purchase attempt.
  function newIdempotencyKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  /* ---- Prices ------------------------------------------------------------------------------ */

  function fill(selector, value) {
    each(selector, function (node) {
      node.textContent = value;
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

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : String(value).replace(/"/g, '\\"');
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

  function setBusy(button, busy) {
    button.disabled = busy;
    button.setAttribute("aria-busy", busy ? "true" : "false");
    button.classList.toggle("is-loading", busy);
  }

  function startCheckout(button, path, product) {
    if (button.disabled) return;
    setBusy(button, true);
    say(button, "");
    var key = newIdempotencyKey();
    Promise.resolve()
      .then(tokenSource)
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
        // fetch() rejects with a TypeError on network failure: its text is not for a person.
        say(button, error instanceof TypeError ? defaultMessage : error.message || defaultMessage);
      });
  }

  function onClick(event) {
    var button = event.target.closest ? event.target.closest("[data-buy],[data-subscribe]") : null;
    if (!button) return;
    event.preventDefault();
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
      setBusy(button, false);
    });
  }

  /* ---- Payment status (F5) and history ------------------------------------------------------ */

  function productName(id) {
    return catalog && catalog[id] ? catalog[id].name : id || "Your purchase";
  }

  function setState(node, state, text) {
    node.setAttribute("data-payment-state", state);
    node.textContent = text;
  }

  function paymentsOf(token) {
    return api("GET", "/v1/me/payments?limit=20", { token: token }).then(function (page) {
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

  // The log holds one row per Stripe event; a person wants one line per outcome. Rows that
  // repeat an outcome already shown (the payment intent of a paid checkout) are left out.
  var HISTORY_LABELS = {
    "checkout.session.created": ["started", "Checkout started"],
    "checkout.session.completed": null, // paid, or processing for a bank debit: see below
    "checkout.session.async_payment_succeeded": ["paid", "Paid"],
    "checkout.session.async_payment_failed": ["failed", "Payment failed"],
    "checkout.session.expired": ["failed", "Checkout expired"],
    "payment_intent.payment_failed": ["failed", "Card declined"],
    "charge.refunded": ["refunded", "Refunded"],
    "refund.created": ["refunded", "Refund"],
    "invoice.paid": ["paid", "Subscription paid"],
    "invoice.payment_failed": ["failed", "Subscription payment failed"],
  };

  function historyLine(row) {
    if (!(row.event_type in HISTORY_LABELS)) return null;
    var label = HISTORY_LABELS[row.event_type];
    if (!label) label = row.status === "paid" ? ["paid", "Paid"] : ["processing", "Processing"];
    var item = document.createElement("li");
    item.setAttribute("data-payment-state", label[0]);
    item.textContent = [
      label[1],
      productName(row.product),
      row.display_amount || "",
      new Date(row.created_at).toLocaleString(),
    ].join(" · ");
    return item;
  }

  function showHistory(list) {
    Promise.resolve()
      .then(tokenSource)
      .then(function (token) {
        return token ? paymentsOf(token) : [];
      })
      .then(function (rows) {
        list.textContent = "";
        rows
          .map(historyLine)
          .filter(Boolean)
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

  /* ---- Start -------------------------------------------------------------------------------- */

  function each(selector, fn) {
    var nodes = document.querySelectorAll(selector);
    for (var i = 0; i < nodes.length; i++) fn(nodes[i]);
  }

  // Prices and history again, e.g. after the member signed in without a page load.
  function refresh() {
    return loadPrices().then(function () {
      each("[data-payment-history]", showHistory);
    });
  }

  function init() {
    if (!apiBase) {
      // Same origin as the page, e.g. the local demo served by `make dev`.
      apiBase = window.location.origin;
    }
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
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
