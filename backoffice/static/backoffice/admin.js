"use strict";
// A button or link with data-confirm asks before it acts (Deny, for one): the question is its value.
document.addEventListener("click", (event) => {
  const target = event.target.closest("[data-confirm]");
  if (target && !window.confirm(target.dataset.confirm)) {
    event.preventDefault();
  }
});
