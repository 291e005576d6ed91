// The console's only script of its own: the overview's chart, drawn from the series the canvas
// carries (data-series: htmx drops <script> blocks it swaps in) and drawn again each time htmx
// swaps in fresh numbers. No inline script anywhere
// (the Content-Security-Policy forbids it).
(function () {
  "use strict";
  let chart = null;

  function draw() {
    const canvas = document.getElementById("activity-chart");
    if (!canvas || !canvas.dataset.series || typeof Chart === "undefined") return;
    const data = JSON.parse(canvas.dataset.series);
    const datasets = [
      { label: "Eventos recebidos", data: data.events, borderColor: "#2563eb", backgroundColor: "rgba(37,99,235,.15)", fill: true, tension: 0.3 },
      { label: "Entregas feitas", data: data.delivered, borderColor: "#16a34a", tension: 0.3 },
      { label: "Tentativas com falha", data: data.failed, borderColor: "#dc2626", tension: 0.3 },
    ];
    if (chart && chart.canvas === canvas) {
      chart.data.labels = data.labels;
      chart.data.datasets.forEach((set, i) => { set.data = datasets[i].data; });
      chart.update("none");
      return;
    }
    if (chart) chart.destroy();
    chart = new Chart(canvas, {
      type: "line",
      data: { labels: data.labels, datasets: datasets },
      options: { animation: false, maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } }, plugins: { legend: { position: "bottom" } } },
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
  // htmx:load fires on content swapped in (an outerHTML swap detaches the old target, whose
  // afterSettle event never reaches the document)
  document.addEventListener("htmx:load", draw);
})();
