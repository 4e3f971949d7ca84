// Keyboard shortcuts for the Vigil console. Optional: every page works without it.
// Served from the console's own origin so the Content-Security-Policy can stay
// "script-src 'self'" with no inline script. It never builds HTML from page data.
(function () {
  "use strict";
  var verdictMode = false;

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#case-queue tbody tr[data-case]"));
  }

  function current() {
    return document.querySelector("#case-queue tbody tr.kbd-current");
  }

  function move(step) {
    var list = rows();
    if (!list.length) return false;
    var at = list.indexOf(current());
    var next = at < 0 ? 0 : Math.min(list.length - 1, Math.max(0, at + step));
    if (at >= 0) list[at].classList.remove("kbd-current");
    list[next].classList.add("kbd-current");
    list[next].scrollIntoView({ block: "nearest" });
    var link = list[next].querySelector("a.case-link");
    if (link) link.focus();
    return true;
  }

  function follow(selector) {
    var a = document.querySelector(selector);
    if (a && a.href) {
      window.location.assign(a.href);
      return true;
    }
    return false;
  }

  function toggleHelp() {
    var help = document.getElementById("kbd-help");
    if (help) help.hidden = !help.hidden;
  }

  function pickVerdict(value) {
    var radio = document.querySelector('#verdict-form input[name=verdict][value="' + value + '"]');
    if (!radio) return false;
    radio.checked = true;
    verdictMode = false;
    document.getElementById("verdict-form").classList.remove("kbd-armed");
    var submit = document.getElementById("verdict-submit");
    if (submit) submit.focus();
    return true;
  }

  var verdictKeys = { m: "misuse", f: "false_positive", i: "needs_info" };

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "Escape") {
      verdictMode = false;
      var help = document.getElementById("kbd-help");
      if (help) help.hidden = true;
      return;
    }
    if (typing(e.target)) return;
    var handled = false;
    if (verdictMode && verdictKeys[e.key]) {
      handled = pickVerdict(verdictKeys[e.key]);
    } else if (e.key === "?") {
      toggleHelp();
      handled = true;
    } else if (e.key === "/") {
      var search = document.getElementById("search");
      if (search) {
        search.focus();
        handled = true;
      }
    } else if (rows().length) {
      // The case queue.
      if (e.key === "j") handled = move(1);
      else if (e.key === "k") handled = move(-1);
      else if (e.key === "Enter" || e.key === "o") {
        var row = current();
        var link = row && row.querySelector("a.case-link");
        if (link) {
          window.location.assign(link.href);
          handled = true;
        }
      } else if (e.key === "x") {
        var box = current() && current().querySelector("input[type=checkbox]");
        if (box) {
          box.checked = !box.checked;
          handled = true;
        }
      }
    } else if (document.getElementById("case-title")) {
      // One case.
      if (e.key === "j") handled = follow("a[rel=next]");
      else if (e.key === "k") handled = follow("a[rel=prev]");
      else if (e.key === "u") handled = follow("#back-to-queue");
      else if (e.key === "v") {
        var form = document.getElementById("verdict-form");
        if (form) {
          verdictMode = true;
          form.classList.add("kbd-armed");
          form.scrollIntoView({ block: "center" });
          handled = true;
        }
      } else if (e.key === "a") {
        var assign = document.getElementById("assign-form");
        if (assign) {
          assign.submit();
          handled = true;
        }
      }
    }
    if (handled) e.preventDefault();
  });
})();
