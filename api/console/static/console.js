// Progressive enhancement only: every form works without this file.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button || !navigator.clipboard) return;
  var source = document.getElementById(button.dataset.copy);
  if (!source) return;
  navigator.clipboard.writeText(source.textContent).then(function () { button.textContent = "Copied"; });
});
document.addEventListener("submit", function (event) {
  var message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
// Live regions: the server sends the region's new HTML (rendered and escaped like the page) as it changes.
document.querySelectorAll("[data-live]").forEach(function (box) {
  if (!window.EventSource) return;
  var source = new EventSource(box.dataset.live);
  source.addEventListener("progress", function (event) { box.innerHTML = event.data; });
  source.addEventListener("done", function () { source.close(); });
});
