// The console's only script (served from /ui/static: the Content-Security-Policy allows no
// inline script). Everything works without it; it adds conveniences.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A spec file picked for upload is read here into the form's text field: the form stays a
  // plain urlencoded post.
  for (const input of document.querySelectorAll("input.spec-file")) {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      const target = document.getElementById(input.dataset.target);
      if (!file || !target) return;
      file.text().then((text) => { target.value = text; });
    });
  }
  // Ask before removing or revoking.
  for (const form of document.querySelectorAll("form.confirm")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm || "Sure?")) event.preventDefault();
    });
  }
  // A period picked is shown at once.
  for (const select of document.querySelectorAll("select.autosubmit")) {
    select.addEventListener("change", () => select.form.submit());
  }
});
