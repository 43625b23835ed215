/*
 * Admin console for the payments service, on an admin-only page: find payments by member,
 * payment intent or date range, open one to see its refunds and what is left, refund all or
 * part of it (with a reason, a note and a confirmation that shows the amount), the pipeline's
 * status, and analytics for a date range drawn as an SVG chart in the browser.
 *
 * Load it after payments-embed.js, whose API client and widgets it uses:
 *
 *   <script src="https://YOUR-HOST/payments-embed.js" data-api-base="https://YOUR-API" defer></script>
 *   <script src="https://YOUR-HOST/payments-admin.js" defer></script>
 *
 * and put one empty element with the attribute data-payments-admin where the console goes.
 * Nothing is drawn until the service has confirmed the signed-in member is an administrator
 * (ADMIN_MEMBER_IDS); anyone else sees a sign-in or "not allowed" message and no data.
 *
 * Plain ES2017, no dependencies, no build step.
 */
(function () {
  "use strict";

  var embed = window.PaymentsEmbed;
  if (!embed || !embed.kit) {
    // Without the embed there is no API address nor member token: say so where it shows.
    document.addEventListener("DOMContentLoaded", function () {
      var blocks = document.querySelectorAll("[data-payments-admin]");
      for (var i = 0; i < blocks.length; i++) {
        blocks[i].textContent = "The admin console needs payments-embed.js, loaded before it.";
      }
    });
    return;
  }
  var kit = embed.kit;
  var api = kit.api;
  var busyWhile = kit.busyWhile;
  var clear = kit.clear;
  var clearMessages = kit.clearMessages;
  var confirmDialog = kit.confirmDialog;
  var currentToken = kit.currentToken;
  var day = kit.day;
  var el = kit.el;
  var gate = kit.gate;
  var isoDay = kit.isoDay;
  var messageLine = kit.messageLine;
  var messageOf = kit.messageOf;
  var money = kit.money;
  var newId = kit.newId;
  var newIdempotencyKey = kit.newIdempotencyKey;
  var parseMoney = kit.parseMoney;
  var part = kit.part;
  var productName = kit.productName;
  var PURCHASE_WORDS = kit.purchaseWords;
  var tell = kit.tell;

  var REASONS = [
    ["requested_by_customer", "Requested by the customer"],
    ["duplicate", "Duplicate payment"],
    ["fraudulent", "Fraudulent"],
  ];
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

  function field(label, control) {
    var id = control.id || newId("field");
    control.id = id;
    return el("span", { class: "pe-field" }, [el("label", { for: id, text: label }), control]);
  }

  function mountAdmin(block) {
    clear(block);
    block.classList.add("pe-admin");
    var gateLine = messageLine("admin-gate");
    var view = el("div", { "data-pe": "admin-view", hidden: true });
    block.appendChild(gateLine);
    block.appendChild(view);
    block._pe = { gate: gateLine, view: view, token: null, search: {}, cursor: null, payments: [] };
    return block._pe;
  }

  function loadAdmin(block) {
    var admin = block._pe || mountAdmin(block);
    block.setAttribute("data-admin-state", "loading");
    gate(admin.gate, "Checking your access…");
    return currentToken()
      .then(function (token) {
        if (!token) {
          admin.view.hidden = true;
          clear(admin.view);
          gate(admin.gate, "Please sign in with an administrator account to use this console.");
          block.setAttribute("data-admin-state", "signed-out");
          return;
        }
        // The first page of recent payments doubles as the access check: nothing is drawn
        // before the service has said this member is an administrator.
        return api("GET", "/v1/admin/payments?limit=20", { token: token }).then(function (page) {
          admin.token = token;
          gate(admin.gate, "");
          buildAdmin(block);
          showPayments(block, page, false);
          admin.view.hidden = false;
          block.setAttribute("data-admin-state", "ready");
          loadPipeline(block);
        });
      })
      .catch(function (error) {
        admin.view.hidden = true;
        clear(admin.view);
        admin.token = null;
        if (error.status === 403) {
          tell(
            admin.gate,
            "You are not allowed to use this console. Ask the site owner to add your member id to the administrators.",
            "error"
          );
          block.setAttribute("data-admin-state", "forbidden");
        } else if (error.status === 401) {
          gate(admin.gate, "Please sign in with an administrator account to use this console.");
          block.setAttribute("data-admin-state", "signed-out");
        } else {
          tell(
            admin.gate,
            messageOf(error, "The console could not be loaded. Please retry."),
            "error"
          );
          block.setAttribute("data-admin-state", "failed");
        }
      });
  }

  function adminSection(view, key, title) {
    var headingId = newId(key);
    var section = el(
      "section",
      { class: "pe-section", "data-pe": key, "aria-labelledby": headingId },
      [el("h3", { id: headingId, class: "pe-heading", text: title })]
    );
    view.appendChild(section);
    return section;
  }

  function buildAdmin(block) {
    var admin = block._pe;
    clear(admin.view);
    // Find payments
    var find = adminSection(admin.view, "find", "Find payments");
    var member = el("input", {
      type: "text",
      name: "member",
      autocomplete: "off",
      "data-pe": "find-member",
      placeholder: "mem_…",
    });
    var intent = el("input", {
      type: "text",
      name: "payment_intent",
      autocomplete: "off",
      "data-pe": "find-intent",
      placeholder: "pi_…",
    });
    var from = el("input", { type: "date", name: "from", "data-pe": "find-from" });
    var to = el("input", { type: "date", name: "to", "data-pe": "find-to" });
    var search = el("button", {
      type: "submit",
      class: "pe-button",
      "data-pe": "find-submit",
      text: "Search",
    });
    var form = el(
      "form",
      {
        class: "pe-form",
        "data-pe": "find-form",
        onsubmit: function (event) {
          event.preventDefault();
          var wanted = {
            member: member.value.trim(),
            payment_intent: intent.value.trim(),
            from: from.value,
            to: to.value,
          };
          // Say what an id looks like here, rather than pass on the service's pattern.
          var problem = searchProblem(wanted);
          if (problem) {
            clearMessages(block);
            tell(part(block, "find-message"), problem, "error");
            return;
          }
          admin.search = wanted;
          searchPayments(block, search, false);
        },
      },
      [
        field("Member id", member),
        field("Payment intent", intent),
        field("From", from),
        field("To", to),
        el("span", { class: "pe-actions" }, [search]),
      ]
    );
    find.appendChild(form);
    find.appendChild(messageLine("find-message"));
    find.appendChild(el("div", { class: "pe-table-wrap", "data-pe": "find-results" }));
    var more = el("button", {
      type: "button",
      class: "pe-button pe-secondary",
      "data-pe": "find-more",
      text: "Load more",
      hidden: true,
      onclick: function (event) {
        searchPayments(block, event.currentTarget, true);
      },
    });
    find.appendChild(el("div", { class: "pe-actions" }, [more]));
    // One payment
    var detail = adminSection(admin.view, "payment", "Payment");
    detail.hidden = true;
    detail.appendChild(el("div", { "data-pe": "payment-body" }));
    detail.appendChild(messageLine("payment-message"));
    // Pipeline
    var pipeline = adminSection(admin.view, "pipeline", "Pipeline");
    pipeline.appendChild(el("div", { "data-pe": "pipeline-body" }));
    pipeline.appendChild(messageLine("pipeline-message"));
    pipeline.appendChild(
      el("div", { class: "pe-actions" }, [
        el("button", {
          type: "button",
          class: "pe-button pe-secondary",
          "data-pe": "pipeline-refresh",
          text: "Refresh",
          onclick: function (event) {
            loadPipeline(block, event.currentTarget);
          },
        }),
      ])
    );
    // Analytics
    var analytics = adminSection(admin.view, "analytics", "Analytics");
    var now = new Date();
    var start = new Date(now.getFullYear(), now.getMonth() - 5, 1);
    var aFrom = el("input", {
      type: "date",
      name: "analytics_from",
      "data-pe": "analytics-from",
      value: isoDay(start),
    });
    var aTo = el("input", {
      type: "date",
      name: "analytics_to",
      "data-pe": "analytics-to",
      value: isoDay(now),
    });
    var show = el("button", {
      type: "submit",
      class: "pe-button",
      "data-pe": "analytics-submit",
      text: "Show",
    });
    analytics.appendChild(
      el(
        "form",
        {
          class: "pe-form",
          "data-pe": "analytics-form",
          onsubmit: function (event) {
            event.preventDefault();
            loadAnalytics(block, aFrom.value, aTo.value, show);
          },
        },
        [field("From", aFrom), field("To", aTo), el("span", { class: "pe-actions" }, [show])]
      )
    );
    analytics.appendChild(messageLine("analytics-message"));
    analytics.appendChild(el("div", { "data-pe": "analytics-body" }));
    loadAnalytics(block, aFrom.value, aTo.value, show);
  }

  function searchProblem(search) {
    if (search.member && !/^[A-Za-z0-9_:-]{1,128}$/.test(search.member)) {
      return "A member id has letters, digits, _ and - only, like mem_abc123.";
    }
    if (search.payment_intent && !/^pi_[A-Za-z0-9_]{1,200}$/.test(search.payment_intent)) {
      return "A payment intent starts with pi_, like pi_3NxYz… in the Stripe Dashboard.";
    }
    if (search.from && search.to && search.from > search.to) {
      return "The first day must be on or before the last one.";
    }
    return null;
  }

  function searchQuery(search, cursor) {
    var params = new URLSearchParams();
    params.set("limit", "20");
    Object.keys(search).forEach(function (key) {
      if (search[key]) params.set(key, search[key]);
    });
    if (cursor) params.set("cursor", cursor);
    return "/v1/admin/payments?" + params.toString();
  }

  function searchPayments(block, button, more) {
    var admin = block._pe;
    clearMessages(block);
    // Only the newest request may draw: a "Load more" of an earlier listing answering after
    // a new search must not append that listing's rows to the search's.
    var request = (admin.request = (admin.request || 0) + 1);
    busyWhile(button, function () {
      return api("GET", searchQuery(admin.search, more ? admin.cursor : null), {
        token: admin.token,
      });
    }).then(
      function (page) {
        if (page && request === admin.request) showPayments(block, page, more);
      },
      function (error) {
        if (request !== admin.request) return;
        tell(
          part(block, "find-message"),
          messageOf(error, "The search failed. Please retry."),
          "error"
        );
      }
    );
  }

  function showPayments(block, page, more) {
    var admin = block._pe;
    admin.payments = more ? admin.payments.concat(page.payments) : page.payments;
    admin.cursor = page.next_cursor;
    var wrap = part(block, "find-results");
    clear(wrap);
    var moreButton = part(block, "find-more");
    moreButton.hidden = !admin.cursor;
    if (!admin.payments.length) {
      wrap.appendChild(el("p", { "data-pe": "find-none", text: "No payment matches." }));
      return;
    }
    var head = ["Date", "Member", "Product", "Paid", "Refunded", "Left to refund", "Status", ""];
    var table = el("table", { class: "pe-table", "data-pe": "find-table" }, [
      el("caption", {
        text:
          admin.payments.length +
          " payment" +
          (admin.payments.length === 1 ? "" : "s") +
          ", newest first",
      }),
      el("thead", {}, [
        el(
          "tr",
          {},
          head.map(function (h) {
            return el(
              "th",
              { scope: "col", text: h || null },
              h ? [] : [el("span", { class: "pe-visually-hidden", text: "Actions" })]
            );
          })
        ),
      ]),
    ]);
    var rows = el("tbody");
    admin.payments.forEach(function (p) {
      rows.appendChild(
        el("tr", { "data-payment-intent": p.payment_intent }, [
          el("td", { text: day(p.created_at) }),
          el("td", { text: p.member_id || "" }),
          el("td", { text: p.product_name }),
          el("td", { class: "pe-num", text: p.display_amount }),
          el("td", { class: "pe-num", text: money(p.amount_refunded, p.currency) }),
          el("td", { class: "pe-num", text: p.display_refundable }),
          el("td", { text: PURCHASE_WORDS[p.status] || p.status }),
          el("td", {}, [
            el("button", {
              type: "button",
              class: "pe-button pe-secondary",
              "data-pe": "open-" + p.payment_intent,
              "aria-label": "Open payment " + p.payment_intent,
              text: "Open",
              onclick: function () {
                openPayment(block, p);
              },
            }),
          ]),
        ])
      );
    });
    table.appendChild(rows);
    wrap.appendChild(table);
  }

  function openPayment(block, payment) {
    clearMessages(block);
    var section = part(block, "payment");
    section.hidden = false;
    section.querySelector(".pe-heading").textContent = "Payment " + payment.payment_intent;
    renderPayment(block, payment);
    section.querySelector(".pe-heading").setAttribute("tabindex", "-1");
    section.querySelector(".pe-heading").focus();
  }

  function renderPayment(block, p) {
    var body = part(block, "payment-body");
    clear(body);
    body.setAttribute("data-payment-intent", p.payment_intent);
    body.appendChild(
      el("dl", { class: "pe-facts" }, [
        el("dt", { text: "Product" }),
        el("dd", { text: p.product_name }),
        el("dt", { text: "Member" }),
        el("dd", { text: p.member_id || "unknown" }),
        el("dt", { text: "Paid" }),
        el("dd", { text: p.display_amount + " on " + day(p.created_at) }),
        el("dt", { text: "Status" }),
        el("dd", { "data-pe": "payment-status", text: PURCHASE_WORDS[p.status] || p.status }),
        el("dt", { text: "Left to refund" }),
        el("dd", { "data-pe": "payment-refundable", text: p.display_refundable }),
        el("dt", { text: "Checkout session" }),
        el("dd", { text: p.checkout_session }),
      ])
    );
    if (p.refunds.length) {
      var table = el("table", { class: "pe-table", "data-pe": "refunds-table" }, [
        el("caption", { text: "Refunds" }),
        el("thead", {}, [
          el(
            "tr",
            {},
            ["Date", "Amount", "Status", "Reason", "Note", "By"].map(function (h) {
              return el("th", { scope: "col", text: h });
            })
          ),
        ]),
      ]);
      var rows = el("tbody");
      p.refunds.forEach(function (r) {
        rows.appendChild(
          el("tr", { "data-refund": r.id }, [
            el("td", { text: day(r.created_at) }),
            el("td", { class: "pe-num", text: r.display_amount }),
            el("td", { text: r.status }),
            el("td", { text: reasonWords(r.reason) }),
            el("td", { text: r.note || "" }),
            el("td", { text: r.requested_by || "" }),
          ])
        );
      });
      table.appendChild(rows);
      body.appendChild(table);
    } else {
      body.appendChild(el("p", { "data-pe": "refunds-none", text: "No refunds yet." }));
    }
    if (p.refundable > 0) {
      body.appendChild(refundForm(block, p));
    } else {
      body.appendChild(
        el("p", {
          "data-pe": "refund-unavailable",
          text: "Nothing is left to refund on this payment.",
        })
      );
    }
  }

  function reasonWords(reason) {
    for (var i = 0; i < REASONS.length; i++) if (REASONS[i][0] === reason) return REASONS[i][1];
    return reason || "";
  }

  function refundForm(block, p) {
    var amount = el("input", {
      type: "text",
      inputmode: "decimal",
      name: "amount",
      autocomplete: "off",
      "data-pe": "refund-amount",
      placeholder: p.display_refundable,
    });
    var reason = el(
      "select",
      { name: "reason", "data-pe": "refund-reason" },
      REASONS.map(function (r) {
        return el("option", { value: r[0], text: r[1] });
      })
    );
    var note = el("textarea", {
      name: "note",
      rows: "2",
      maxlength: "500",
      "data-pe": "refund-note",
    });
    var submit = el("button", {
      type: "submit",
      class: "pe-button pe-danger",
      "data-pe": "refund-submit",
      text: "Refund…",
    });
    return el(
      "form",
      {
        class: "pe-form",
        "data-pe": "refund-form",
        onsubmit: function (event) {
          event.preventDefault();
          confirmRefund(
            block,
            p,
            { amount: amount.value, reason: reason.value, note: note.value.trim() },
            submit
          );
        },
      },
      [
        field("Amount to refund (empty: all that is left, " + p.display_refundable + ")", amount),
        field("Reason", reason),
        field("Note for the records", note),
        el("span", { class: "pe-actions" }, [submit]),
      ]
    );
  }

  function confirmRefund(block, p, input, button) {
    clearMessages(block);
    var line = part(block, "payment-message");
    var cents = input.amount.trim() ? parseMoney(input.amount) : p.refundable;
    if (!cents || cents <= 0) {
      tell(
        line,
        "Type the amount to refund, like 10 or 10.50, or leave it empty to refund all that is left.",
        "error"
      );
      return;
    }
    if (cents > p.refundable) {
      tell(
        line,
        "That is more than what is left to refund (" + p.display_refundable + ").",
        "error"
      );
      return;
    }
    var shown = money(cents, p.currency);
    var body = [
      p.product_name +
        ", " +
        p.display_amount +
        " paid by " +
        (p.member_id || "an unknown member") +
        " on " +
        day(p.created_at) +
        ".",
      "Left to refund after this: " + money(p.refundable - cents, p.currency) + ".",
      "Reason: " + reasonWords(input.reason) + ".",
    ];
    if (input.note) body.push("Note: " + input.note);
    // One key per confirmed refund: a retried or doubled request refunds once.
    var key = newIdempotencyKey();
    confirmDialog({
      title: "Refund " + shown + "?",
      body: body,
      actions: [{ value: "refund", label: "Refund " + shown, danger: true }],
    }).then(function (choice) {
      if (choice !== "refund") return;
      var admin = block._pe;
      var request = { payment_intent: p.payment_intent, amount: cents, reason: input.reason };
      if (input.note) request.note = input.note;
      busyWhile(button, function () {
        return api("POST", "/v1/refunds", {
          token: admin.token,
          body: request,
          idempotencyKey: key,
        });
      }).then(
        function (refund) {
          if (!refund) return;
          return reloadPayment(block, p.payment_intent).then(function () {
            var status = refund.status === "succeeded" ? "" : " (status: " + refund.status + ")";
            var done = "Refunded " + money(refund.amount, refund.currency) + status + ".";
            tell(part(block, "payment-message"), done, "success");
            part(block, "payment").querySelector(".pe-heading").focus();
          });
        },
        function (error) {
          tell(line, messageOf(error, "The refund failed. Please retry."), "error");
        }
      );
    });
  }

  function reloadPayment(block, paymentIntent) {
    var admin = block._pe;
    return api("GET", searchQuery({ payment_intent: paymentIntent }, null), {
      token: admin.token,
    }).then(function (page) {
      var fresh = page.payments[0];
      if (!fresh) return;
      admin.payments = admin.payments.map(function (p) {
        return p.payment_intent === paymentIntent ? fresh : p;
      });
      showPayments(block, { payments: admin.payments, next_cursor: admin.cursor }, false);
      renderPayment(block, fresh);
    });
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "none";
    if (seconds < 90) return seconds + " s";
    if (seconds < 5400) return Math.round(seconds / 60) + " min";
    return Math.round(seconds / 3600) + " h";
  }

  var RECONCILE_WORDS = { ok: "healed everything", partial: "healed part of it", failed: "failed" };

  function loadPipeline(block, button) {
    var admin = block._pe;
    var body = part(block, "pipeline-body");
    var line = part(block, "pipeline-message");
    if (button) clearMessages(block);
    var load = function () {
      return api("GET", "/v1/admin/pipeline", { token: admin.token });
    };
    (button ? busyWhile(button, load) : load()).then(
      function (status) {
        if (!status) return;
        clear(body);
        var dispatches = status.dispatches || {};
        var kinds = Object.keys(dispatches.by_kind || {}).map(function (k) {
          return k + ": " + dispatches.by_kind[k];
        });
        var last = status.last_reconcile;
        var facts = [
          el("dt", { text: "Dead letters" }),
          el("dd", {
            "data-pe": "pipeline-dead-letters",
            text:
              status.dead_letters && status.dead_letters.depth !== null
                ? String(status.dead_letters.depth)
                : "unknown",
          }),
          el("dt", { text: "Dispatches waiting" }),
          el("dd", {
            "data-pe": "pipeline-pending",
            text:
              String(dispatches.pending || 0) + (kinds.length ? " (" + kinds.join(", ") + ")" : ""),
          }),
          el("dt", { text: "Oldest waiting for" }),
          el("dd", { text: age(dispatches.oldest_pending_age_seconds) }),
          el("dt", { text: "Last reconcile" }),
          el("dd", {
            "data-pe": "pipeline-reconcile",
            text: last
              ? day(last.finished_at || last.started_at) +
                " " +
                new Date(last.finished_at || last.started_at).toLocaleTimeString() +
                ": " +
                (RECONCILE_WORDS[last.status] || last.status) +
                " (" +
                last.events_healed +
                " events, " +
                last.dispatches_drained +
                " dispatches, " +
                last.drift_corrected +
                " corrections, " +
                last.stuck +
                " stuck)"
              : "never ran",
          }),
        ];
        body.appendChild(el("dl", { class: "pe-facts" }, facts));
      },
      function (error) {
        clear(body);
        if (error.status === 404) {
          // A state of the deployment, not the outcome of a click: it stays in the body.
          body.appendChild(
            el("p", {
              "data-pe": "pipeline-unavailable",
              text: "Pipeline status is not available on this deployment yet.",
            })
          );
          return;
        }
        tell(line, messageOf(error, "The pipeline status could not be loaded."), "error");
      }
    );
  }

  function loadAnalytics(block, from, to, button) {
    var admin = block._pe;
    clearMessages(block);
    var body = part(block, "analytics-body");
    if (!from || !to) {
      tell(part(block, "analytics-message"), "Choose both days of the range.", "error");
      return;
    }
    busyWhile(button, function () {
      return api(
        "GET",
        "/v1/admin/analytics?from=" + encodeURIComponent(from) + "&to=" + encodeURIComponent(to),
        { token: admin.token }
      );
    }).then(
      function (report) {
        if (!report) return;
        clear(body);
        body.appendChild(analyticsChart(report));
        body.appendChild(analyticsTable(report));
      },
      function (error) {
        tell(
          part(block, "analytics-message"),
          messageOf(error, "The figures could not be loaded."),
          "error"
        );
      }
    );
  }

  // Net per period and product, for the products that have figures in the range. Up to a
  // month of days is drawn per day, longer ranges per month.
  function chartSeries(report) {
    var days = (new Date(report.to) - new Date(report.from)) / 86400000 + 1;
    var rows = days <= 31 ? report.daily : report.monthly;
    var label = function (period) {
      return days <= 31 ? period.slice(5) : period.slice(0, 7);
    };
    // Every day (or month) of the range, the quiet ones too: a gap is part of the trend.
    var periods = [];
    var cursor = new Date(report.from + "T00:00:00Z");
    if (days > 31) cursor.setUTCDate(1);
    var end = new Date(report.to + "T00:00:00Z");
    while (cursor <= end && periods.length < 800) {
      periods.push(cursor.toISOString().slice(0, 10));
      if (days <= 31) cursor.setUTCDate(cursor.getUTCDate() + 1);
      else cursor.setUTCMonth(cursor.getUTCMonth() + 1);
    }
    var products = [];
    rows.forEach(function (r) {
      if ((r.gross || r.refunds || r.disputes) && products.indexOf(r.product) < 0)
        products.push(r.product);
    });
    products.sort();
    var values = products.map(function (product) {
      return periods.map(function (period) {
        return rows
          .filter(function (r) {
            return r.product === product && r.period === period;
          })
          .reduce(function (sum, r) {
            return sum + r.net;
          }, 0);
      });
    });
    return {
      by: days <= 31 ? "day" : "month",
      periods: periods.map(label),
      products: products,
      values: values,
      currency: rows.length ? rows[0].currency : "usd",
    };
  }

  // A round axis step (1, 2 or 5 times a power of ten, whole dollars at least) giving about
  // four grid lines over ``range`` cents.
  function niceStep(range) {
    var raw = Math.max(range, 100) / 4;
    var magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    var n = raw / magnitude;
    var step = (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * magnitude;
    return Math.max(step, 100);
  }

  function svg(tag, attrs, children) {
    var node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else node.setAttribute(name, String(attrs[name]));
    });
    (children || []).forEach(function (child) {
      node.appendChild(child);
    });
    return node;
  }

  function analyticsChart(report) {
    var series = chartSeries(report);
    var titleId = newId("chart-title");
    var W = 720;
    var H = 320;
    var left = 64;
    var right = 12;
    var top = 16;
    var bottom = 64;
    var chart = svg("svg", {
      viewBox: "0 0 " + W + " " + H,
      role: "img",
      "aria-labelledby": titleId,
      class: "pe-chart",
      "data-pe": "analytics-chart",
    });
    chart.appendChild(
      svg("title", {
        id: titleId,
        text: "Net revenue by " + series.by + " and product, " + report.from + " to " + report.to,
      })
    );
    if (!series.products.length) {
      chart.appendChild(
        svg("text", {
          x: W / 2,
          y: H / 2,
          "text-anchor": "middle",
          class: "pe-chart-empty",
          text: "No payments in this range",
        })
      );
      return chart;
    }
    var all = [].concat.apply([0], series.values);
    var step = niceStep(Math.max.apply(null, all) - Math.min.apply(null, all));
    var max = Math.ceil(Math.max.apply(null, all) / step) * step;
    var min = Math.floor(Math.min.apply(null, all) / step) * step;
    if (max === min) max = min + step;
    var plotH = H - top - bottom;
    var y = function (v) {
      return top + ((max - v) / (max - min)) * plotH;
    };
    for (var value = min; value <= max; value += step) {
      chart.appendChild(
        svg("line", { x1: left, x2: W - right, y1: y(value), y2: y(value), class: "pe-grid" })
      );
      chart.appendChild(
        svg("text", {
          x: left - 6,
          y: y(value) + 4,
          "text-anchor": "end",
          class: "pe-axis",
          text: money(value, series.currency),
        })
      );
    }
    chart.appendChild(
      svg("line", { x1: left, x2: W - right, y1: y(0), y2: y(0), class: "pe-zero" })
    );
    var groupW = (W - left - right) / series.periods.length;
    // At most about twelve period labels, so they never overlap.
    var labelEvery = Math.ceil(series.periods.length / 12);
    var barW = Math.min(36, (groupW * 0.8) / series.products.length);
    series.periods.forEach(function (period, i) {
      var centre = left + groupW * (i + 0.5);
      series.products.forEach(function (product, j) {
        var v = series.values[j][i];
        var x = centre + (j - series.products.length / 2) * barW;
        var bar = svg(
          "rect",
          {
            x: x,
            y: Math.min(y(v), y(0)),
            width: Math.max(barW - 2, 1),
            height: Math.max(Math.abs(y(v) - y(0)), v ? 1 : 0),
            fill: PALETTE[j % PALETTE.length],
            "data-product": product,
            "data-period": period,
            "data-net": v,
          },
          [
            svg("title", {
              text: productName(product) + ", " + period + ": " + money(v, series.currency),
            }),
          ]
        );
        chart.appendChild(bar);
        // Narrow bars (many days) keep their value in the tooltip and the table below.
        if (v && barW >= 20) {
          chart.appendChild(
            svg("text", {
              x: x + barW / 2 - 1,
              y: v >= 0 ? y(v) - 4 : y(v) + 12,
              "text-anchor": "middle",
              class: "pe-bar-label",
              text: money(v, series.currency),
            })
          );
        }
      });
      if (i % labelEvery) return;
      chart.appendChild(
        svg("text", {
          x: centre,
          y: H - bottom + 18,
          "text-anchor": "middle",
          class: "pe-axis",
          text: period,
        })
      );
    });
    var legendX = left;
    series.products.forEach(function (product, j) {
      var name = productName(product);
      chart.appendChild(
        svg("rect", {
          x: legendX,
          y: H - 22,
          width: 12,
          height: 12,
          fill: PALETTE[j % PALETTE.length],
        })
      );
      chart.appendChild(
        svg("text", { x: legendX + 18, y: H - 12, class: "pe-legend", text: name })
      );
      legendX += 28 + name.length * 7;
    });
    return chart;
  }

  function analyticsTable(report) {
    var head = ["Product", "Gross", "Refunds", "Disputes", "Net", "Paid", "Conversion"];
    var table = el("table", { class: "pe-table", "data-pe": "analytics-table" }, [
      el("caption", { text: "Totals, " + report.from + " to " + report.to }),
      el("thead", {}, [
        el(
          "tr",
          {},
          head.map(function (h) {
            return el("th", { scope: "col", text: h });
          })
        ),
      ]),
    ]);
    var rows = el("tbody");
    report.by_product.forEach(function (f) {
      rows.appendChild(
        el("tr", { "data-product": f.product }, [
          el("td", { text: productName(f.product) }),
          el("td", { class: "pe-num", text: money(f.gross, f.currency) }),
          el("td", { class: "pe-num", text: money(f.refunds, f.currency) }),
          el("td", { class: "pe-num", text: money(f.disputes, f.currency) }),
          el("td", { class: "pe-num", text: money(f.net, f.currency) }),
          el("td", { class: "pe-num", text: String(f.paid_count) }),
          el("td", {
            class: "pe-num",
            text: f.conversion_rate === null ? "" : Math.round(f.conversion_rate * 100) + " %",
          }),
        ])
      );
    });
    if (!report.by_product.length) {
      rows.appendChild(
        el("tr", {}, [el("td", { colspan: head.length, text: "No payments in this range." })])
      );
    }
    table.appendChild(rows);
    return table;
  }

  embed.addBlock("[data-payments-admin]", loadAdmin);
})();
