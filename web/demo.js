/*
 * Local demo only: a member picker standing in for Memberstack's login. It gets a real token
 * from the Memberstack stand-in (through the dev server's POST /_local/member-token) and hands
 * it to the payments embed through its pluggable token source. Load it before the embed.
 */
(function () {
  "use strict";

  var STORAGE_KEY = "payments-demo-member";

  function signedIn() {
    try {
      return JSON.parse(window.sessionStorage.getItem(STORAGE_KEY));
    } catch (error) {
      return null;
    }
  }

  // Read at click time, so signing in needs no page reload.
  window.PaymentsEmbedConfig = {
    getToken: function () {
      var member = signedIn();
      return member ? member.token : null;
    },
  };

  function render() {
    var member = signedIn();
    var who = document.querySelector("[data-demo-who]");
    if (who) {
      who.innerHTML = "";
      if (member) {
        who.appendChild(document.createTextNode("Signed in as "));
        var name = document.createElement("strong");
        name.textContent = member.id;
        who.appendChild(name);
      } else {
        who.textContent = "Not signed in";
      }
    }
    var signOut = document.querySelector("[data-demo-sign-out]");
    if (signOut) signOut.hidden = !member;
    var signIn = document.querySelector("[data-demo-sign-in] button[type=submit]");
    if (signIn) signIn.textContent = member ? "Switch member" : "Sign in";
    var input = document.querySelector("[data-demo-sign-in] input");
    if (input && member) input.value = member.id;
  }

  function signIn(memberId) {
    return fetch("/_local/member-token", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ member_id: memberId }),
    })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.error ? data.error.message : "Sign-in failed");
          return data.token;
        });
      })
      .then(function (token) {
        window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ id: memberId, token: token }));
        render();
        if (window.PaymentsEmbed) window.PaymentsEmbed.refresh();
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    render();
    var form = document.querySelector("[data-demo-sign-in]");
    if (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var input = form.querySelector("input");
        var error = form.querySelector("[data-demo-error]");
        error.textContent = "";
        signIn(input.value.trim()).catch(function (failure) {
          error.textContent = failure.message;
        });
      });
    }
    var signOut = document.querySelector("[data-demo-sign-out]");
    if (signOut) {
      signOut.addEventListener("click", function () {
        window.sessionStorage.removeItem(STORAGE_KEY);
        render();
        if (window.PaymentsEmbed) window.PaymentsEmbed.refresh();
      });
    }
  });
})();
