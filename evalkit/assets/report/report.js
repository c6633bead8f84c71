// Filter the gallery by category and free text; the cards are already ordered worst first.
// The category is kept in the URL (#category=...), so a filtered view can be linked to.
(function () {
  const select = document.getElementById("category");
  const search = document.getElementById("search");
  const count = document.getElementById("count");
  const gallery = document.getElementById("gallery");
  const cards = Array.from(gallery.querySelectorAll(".card"));
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
    gallery.dataset.shown = String(shown);
  }
  function fromHash() {
    const m = /category=([^&]*)/.exec(window.location.hash);
    const wanted = m ? decodeURIComponent(m[1]) : "";
    if (Array.from(select.options).some((o) => o.value === wanted)) select.value = wanted;
    apply();
  }
  select.addEventListener("change", () => {
    history.replaceState(null, "", select.value ? "#category=" + encodeURIComponent(select.value) : "#");
    apply();
  });
  search.addEventListener("input", apply);
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
