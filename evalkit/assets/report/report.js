// Filter the gallery by category and free text; the cards are already ordered worst first.
(function () {
  const select = document.getElementById("category");
  const search = document.getElementById("search");
  const count = document.getElementById("count");
  const cards = Array.from(document.querySelectorAll("#gallery .card"));
  const suffix = count.textContent.replace(/^\d+/, "");
  function apply() {
    const cat = select.value;
    const text = search.value.trim().toLowerCase();
    let shown = 0;
    for (const card of cards) {
      const ok = (!cat || card.dataset.category === cat) &&
        (!text || card.textContent.toLowerCase().includes(text));
      card.classList.toggle("hidden", !ok);
      if (ok) shown += 1;
    }
    count.textContent = shown + suffix;
  }
  select.addEventListener("change", apply);
  search.addEventListener("input", apply);
})();
