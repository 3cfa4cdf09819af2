// Progressive enhancement only: the page works without JavaScript, the server validates again.

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Client-side check of the contact form, mirroring Crm\ContactValidator. */
function validate(form) {
  const errors = {};
  if (form.elements.name.value.trim() === '') errors.name = 'name is required';
  if (!EMAIL.test(form.elements.email.value.trim())) errors.email = 'a valid email is required';
  return errors;
}

function showErrors(form, errors) {
  for (const slot of form.querySelectorAll('[data-error-for]')) {
    const field = slot.dataset.errorFor;
    slot.textContent = errors[field] ?? '';
    form.elements[field].setAttribute('aria-invalid', field in errors ? 'true' : 'false');
  }
}

/** Hides the table rows that do not contain the filter text. */
function setupFilter(input, table) {
  input.hidden = false;
  input.addEventListener('input', () => {
    const needle = input.value.trim().toLowerCase();
    for (const row of table.tBodies[0].rows) {
      row.hidden = needle !== '' && !row.textContent.toLowerCase().includes(needle);
    }
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const form = document.getElementById('contact-form');
  form?.addEventListener('submit', (event) => {
    const errors = validate(form);
    showErrors(form, errors);
    if (Object.keys(errors).length > 0) event.preventDefault();
  });

  const filter = document.getElementById('contact-filter');
  const table = document.getElementById('contacts');
  if (filter && table) setupFilter(filter, table);
});
