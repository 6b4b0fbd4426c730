// report.html's per-class table: click a header to sort (again to reverse), type to filter.
// Shipped with videonet and inlined into the page: nothing is fetched, the report works offline.
(function () {
  "use strict";
  const table = document.getElementById("classes");
  const filter = document.getElementById("filter");
  const count = document.getElementById("shown");
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);

  function cellValue(row, column, numeric) {
    const text = row.cells[column].textContent.trim();
    if (!numeric) return text.toLowerCase();
    return text === "" ? -Infinity : Number(text);  // empty (no retention) sorts as the lowest
  }

  headers.forEach(function (header, column) {
    header.addEventListener("click", function () {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      const numeric = header.dataset.type === "number";
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        const x = cellValue(a, column, numeric), y = cellValue(b, column, numeric);
        const order = x < y ? -1 : x > y ? 1 : 0;
        return ascending ? order : -order;
      });
      body.append.apply(body, rows);
    });
  });

  function applyFilter() {
    const query = filter.value.trim().toLowerCase();
    let shown = 0;
    for (const row of body.rows) {
      row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
      if (!row.hidden) shown += 1;
    }
    for (const sheet of document.querySelectorAll("section.sheet")) {
      sheet.hidden = query !== "" && !sheet.dataset.filter.includes(query);
    }
    count.textContent = shown + " of " + body.rows.length + " classes";
  }

  filter.addEventListener("input", applyFilter);
  applyFilter();
})();
