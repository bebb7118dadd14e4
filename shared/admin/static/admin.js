// Progressive enhancement only: everything works without it (filters submit, forms post).
document.addEventListener("DOMContentLoaded", () => {
  // Filter the task tables as the administrator types or picks (the form still submits without JavaScript).
  const inputs = document.querySelectorAll("[data-filter]");
  const apply = () => {
    const wanted = {};
    inputs.forEach((input) => { wanted[input.dataset.filter] = input.value.trim().toLowerCase(); });
    document.querySelectorAll("tr[data-kind]").forEach((row) => {
      const show = (!wanted.name || row.dataset.name.includes(wanted.name))
        && (!wanted.status || row.dataset.status === wanted.status)
        && (!wanted.kind || row.dataset.kind === wanted.kind);
      row.hidden = !show;
    });
  };
  inputs.forEach((input) => input.addEventListener("input", apply));
  // Ask before destructive actions.
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
  });
});
