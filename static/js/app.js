// imapcopier: the little JavaScript there is. Pages work without it; it adds
// local times, dialogs and the htmx settings. Everything it attaches to is
// marked by a data- attribute or a <time datetime> element.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  if (window.htmx) {
    // Swap 409 answers (a refused change comes back as the form with its message);
    // other 4xx/5xx stay unswapped and raise htmx:responseError.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "409", swap: true, error: false },
      { code: "[23]..", swap: true },
      { code: "[45]..", swap: false, error: true },
      { code: "...", swap: false },
    ];
  }

  var dateFormat = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  var timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

  // <time datetime="UTC ISO"> → browser's local time; the UTC text stays in the title.
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-localised])").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var now = new Date();
      var sameDay = when.toDateString() === now.toDateString();
      el.title = el.title || el.textContent.trim();
      el.textContent = sameDay ? "today " + timeFormat.format(when) : dateFormat.format(when);
      el.setAttribute("data-localised", "");
    });
  }

  // <dialog data-autoshow>: opened as soon as it arrives, removed from the page when closed.
  function showDialogs(root) {
    var dialogs = root.matches && root.matches("dialog[data-autoshow]") ? [root] : [];
    root.querySelectorAll("dialog[data-autoshow]").forEach(function (d) { dialogs.push(d); });
    dialogs.forEach(function (dialog) {
      if (dialog.open) return;
      dialog.addEventListener("close", function () { dialog.remove(); });
      dialog.addEventListener("click", function (event) {
        if (event.target === dialog) dialog.close();  // click on the backdrop
      });
      dialog.showModal();
    });
  }

  // Tables turn into stacked rows on a phone (app.css, "Small screens"): each cell is labelled with
  // its column's heading, so a number still says what it counts. Cells that already carry a
  // data-label keep it; a heading with no text (a buttons column) labels nothing.
  function labelCells(root) {
    var tables = root.matches && root.matches("table") ? [root] : [];
    root.querySelectorAll("table").forEach(function (t) { tables.push(t); });
    tables.forEach(function (table) {
      var heads = table.querySelectorAll("thead th");
      if (!heads.length) return;
      var names = Array.prototype.map.call(heads, function (th) { return th.textContent.trim(); });
      table.querySelectorAll("tbody tr").forEach(function (tr) {
        var column = 0;
        Array.prototype.forEach.call(tr.children, function (cell) {
          if (!cell.hasAttribute("data-label") && names[column]) cell.setAttribute("data-label", names[column]);
          column += cell.colSpan || 1;
        });
      });
      table.setAttribute("data-stacking", "");
    });
  }

  function onLoad(root) {
    localiseTimes(root);
    showDialogs(root);
    labelCells(root);
  }

  // <button data-nav-toggle>: opens and closes the main navigation on a small screen.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-nav-toggle]");
    if (!toggle) return;
    var open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    document.getElementById(toggle.getAttribute("aria-controls")).classList.toggle("open", open);
  });

  // <button data-confirm="..."> asks before submitting (the server still checks everything).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  // <select data-default-ports='{"ssl": 993, ...}'> in a form with a port field: moving from SSL/TLS
  // to STARTTLS changes 993 to 143 (and back), but never a port the operator typed.
  document.addEventListener("change", function (event) {
    var select = event.target.closest("select[data-default-ports]");
    if (!select || !select.form || !select.form.elements.port) return;
    var defaults = JSON.parse(select.getAttribute("data-default-ports"));
    var port = select.form.elements.port;
    var known = Object.keys(defaults).map(function (k) { return String(defaults[k]); });
    if (port.value === "" || known.indexOf(port.value) !== -1) port.value = defaults[select.value];
  });

  if (window.htmx) {
    htmx.onLoad(onLoad);
  } else {
    document.addEventListener("DOMContentLoaded", function () { onLoad(document.body); });
  }
})();
