// The memory edit page (issue 17 item 5), as progressive enhancement: without this script
// the tags box takes "ops, billing", the metadata box takes JSON that the server checks,
// and the tabs are in-page links to sections shown one after the other.
//
// - Tags: chips with a remove button each; Enter or a comma adds what was typed. The
//   original input stays the form's field and always holds "a, b" (what the server reads).
// - Metadata: live feedback as it is typed (valid object or the parser's message, depth
//   against data-max-depth), and a Format button that pretty-prints.
// - Tabs: WAI-ARIA tabs (roles, aria-selected, arrow keys, Home/End); the URL's #hash
//   names the open tab, so a link to #versions (HISTORY, a revert) opens that tab.
(function () {
  "use strict";

  function make(tag, className, text) {
    const element = document.createElement(tag);
    if (className) { element.className = className; }
    if (text !== undefined) { element.textContent = text; }
    return element;
  }

  // --- tags -----------------------------------------------------------------------------
  function parseTags(text) {
    const trimmed = text.trim();
    if (trimmed.startsWith("[")) {  // the old JSON-list input, still accepted
      try {
        const value = JSON.parse(trimmed);
        if (Array.isArray(value) && value.every((tag) => typeof tag === "string")) {
          return value.map((tag) => tag.trim()).filter(Boolean);
        }
      } catch (error) { /* read as commas */ }
    }
    return text.split(",").map((tag) => tag.trim()).filter(Boolean);
  }

  function initTags(input) {
    const maxLength = Number(input.dataset.maxLength) || Infinity;
    const maxTags = Number(input.dataset.maxTags) || Infinity;
    let tags = [...new Set(parseTags(input.value))];

    const box = make("div", "mw-chips");
    const list = make("ul", "mw-chip-list");
    list.setAttribute("aria-label", "Current tags");
    const entry = make("input", "mw-chip-entry");
    entry.type = "text";
    entry.id = input.id + "_entry";
    entry.autocomplete = "off";
    entry.placeholder = "Add a tag, then Enter or comma";
    const note = make("p", "help mw-chip-note");
    note.id = input.id + "_note";
    note.setAttribute("aria-live", "polite");
    entry.setAttribute("aria-describedby", note.id);
    box.append(list, entry);
    input.after(box);
    (input.closest(".flex-container") || box).after(note);  // under the field, not beside
    input.hidden = true;
    const label = document.querySelector('label[for="' + input.id + '"]');
    if (label) { label.htmlFor = entry.id; }

    function render() {
      list.replaceChildren(...tags.map((tag) => {
        const chip = make("li", "mw-chip");
        chip.dataset.tag = tag;
        const remove = make("button", "mw-chip-remove", "\u00d7");
        remove.type = "button";
        remove.setAttribute("aria-label", "Remove tag " + tag);
        remove.addEventListener("click", () => {
          tags = tags.filter((other) => other !== tag);
          update("Removed tag " + tag + ".");
          entry.focus();
        });
        chip.append(make("span", "mw-chip-text", tag), remove);
        return chip;
      }));
    }

    function update(message) {
      input.value = tags.join(", ");
      input.dispatchEvent(new Event("change", { bubbles: true }));
      render();
      const problems = [];
      if (tags.length > maxTags) { problems.push("At most " + maxTags + " tags."); }
      const long = tags.find((tag) => tag.length > maxLength);
      if (long) { problems.push("“" + long.slice(0, 40) + "” is longer than " + maxLength + " characters."); }
      note.textContent = problems.length ? problems.join(" ") : (message || "");
      note.classList.toggle("mw-invalid", problems.length > 0);
    }

    function commit() {
      const added = parseTags(entry.value).filter((tag) => !tags.includes(tag));
      entry.value = "";
      if (added.length) {
        tags = [...new Set([...tags, ...added])];
        update("Added " + (added.length === 1 ? "tag " : "tags ") + added.join(", ") + ".");
      }
    }

    entry.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === ",") {
        event.preventDefault();  // Enter would submit the form
        commit();
      } else if (event.key === "Backspace" && entry.value === "" && tags.length) {
        const last = tags[tags.length - 1];
        tags = tags.slice(0, -1);
        update("Removed tag " + last + ".");
      }
    });
    entry.addEventListener("input", () => { if (entry.value.includes(",")) { commit(); } });
    entry.addEventListener("blur", commit);
    if (input.form) { input.form.addEventListener("submit", commit); }
    update("");
  }

  // --- metadata -------------------------------------------------------------------------
  function depth(value) {
    if (value === null || typeof value !== "object") { return 0; }
    const items = Array.isArray(value) ? value : Object.values(value);
    return 1 + items.reduce((deepest, item) => Math.max(deepest, depth(item)), 0);
  }

  function initJson(area) {
    const maxDepth = Number(area.dataset.maxDepth) || Infinity;
    const bar = make("div", "help mw-json-bar");
    const status = make("p", "mw-json-status");
    status.id = area.id + "_status";
    status.setAttribute("role", "status");
    const format = make("button", "button mw-json-format", "Format");
    format.type = "button";
    bar.append(format, status);
    (area.closest(".flex-container") || area).after(bar);  // under the box, not beside
    const described = (area.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
    area.setAttribute("aria-describedby", [...described, status.id].join(" "));

    function check() {
      const text = area.value;
      let problem = null;
      let value = {};
      if (text.trim()) {
        try {
          value = JSON.parse(text);
        } catch (error) {
          problem = "Not valid JSON: " + error.message;
        }
      }
      if (!problem && (value === null || typeof value !== "object" || Array.isArray(value))) {
        problem = "Metadata must be a JSON object ({\"key\": value, …}), not "
          + (Array.isArray(value) ? "a list." : "a single value.");
      }
      if (!problem && depth(value) > maxDepth) {
        problem = "Nested deeper than " + maxDepth + " levels.";
      }
      const keys = problem ? 0 : Object.keys(value).length;
      status.textContent = problem || (text.trim()
        ? "Valid JSON object (" + keys + (keys === 1 ? " key)." : " keys).")
        : "Empty: saved as {}.");
      status.classList.toggle("mw-invalid", Boolean(problem));
      status.classList.toggle("mw-valid", !problem);
      area.setAttribute("aria-invalid", problem ? "true" : "false");
      format.disabled = Boolean(problem);
      return problem ? undefined : value;
    }

    format.addEventListener("click", () => {
      const value = check();
      if (value !== undefined) {
        area.value = JSON.stringify(value, null, 2);
        check();
      }
    });
    area.addEventListener("input", check);
    check();
  }

  // --- tabs -----------------------------------------------------------------------------
  function initTabs(nav) {
    const tabs = [...nav.querySelectorAll("a[data-mw-tab]")];
    const panels = tabs.map((tab) => document.getElementById(tab.hash.slice(1)));
    if (!tabs.length || panels.includes(null)) { return; }
    const list = nav.querySelector("ul");
    list.setAttribute("role", "tablist");
    list.setAttribute("aria-label", nav.getAttribute("aria-label") || "Sections");
    tabs.forEach((tab, index) => {
      tab.parentElement.setAttribute("role", "presentation");
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", panels[index].id);
      panels[index].setAttribute("role", "tabpanel");
      panels[index].setAttribute("aria-labelledby", tab.id);
      if (index > 0) { panels[index].tabIndex = 0; }  // the form panel has fields to focus
    });
    document.body.classList.add("mw-tabbed");

    function select(index, focus) {
      tabs.forEach((tab, other) => {
        const chosen = other === index;
        tab.setAttribute("aria-selected", chosen ? "true" : "false");
        tab.tabIndex = chosen ? 0 : -1;
        panels[other].hidden = !chosen;
      });
      if (focus) { tabs[index].focus(); }
    }

    function fromHash() {
      // A refused save shows its errors on the form, whatever tab the URL names.
      if (document.querySelector("#mw-edit .errornote")) { return 0; }
      const index = panels.findIndex((panel) => "#" + panel.id === window.location.hash);
      return index < 0 ? 0 : index;
    }

    tabs.forEach((tab, index) => {
      tab.addEventListener("click", (event) => {
        event.preventDefault();
        select(index, false);
        history.replaceState(null, "", tab.hash);  // remembered on reload, no jump
      });
      tab.addEventListener("keydown", (event) => {
        const moves = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 };
        if (!(event.key in moves)) { return; }
        event.preventDefault();
        const next = (moves[event.key] + tabs.length) % tabs.length;
        select(next, true);
        history.replaceState(null, "", tabs[next].hash);
      });
    });
    window.addEventListener("hashchange", () => select(fromHash(), false));
    select(fromHash(), false);
    if (window.location.hash) { nav.scrollIntoView({ block: "nearest" }); }
  }

  function init() {
    document.querySelectorAll("input[data-mw-tags]").forEach(initTags);
    document.querySelectorAll("textarea[data-mw-json]").forEach(initJson);
    document.querySelectorAll("[data-mw-tabs]").forEach(initTabs);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
}());
