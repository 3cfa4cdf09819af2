<?php
/**
 * @var callable $e
 * @var list<array> $contacts
 * @var ?string $token  null when APP_SECRET is not configured
 * @var array<string,string> $errors
 * @var array<string,mixed> $old
 * @var ?string $flash
 */
$value = static fn (string $field) => is_string($old[$field] ?? null) ? $old[$field] : '';
?>
<?php if ($flash !== null): ?>
  <p class="flash" role="status"><?= $e($flash) ?></p>
<?php endif ?>

<section>
  <h2>Add a contact</h2>
  <?php if ($token === null): ?>
    <p class="error">Adding contacts is disabled: APP_SECRET is not configured.</p>
  <?php else: ?>
    <form id="contact-form" method="post" action="/contacts" novalidate>
      <input type="hidden" name="_token" value="<?= $e($token) ?>">
      <?php foreach (['name' => 'Name', 'email' => 'Email', 'company' => 'Company (optional)', 'phone' => 'Phone (optional)'] as $field => $label): ?>
        <label>
          <?= $e($label) ?>
          <input name="<?= $e($field) ?>" value="<?= $e($value($field)) ?>"
                 type="<?= ['email' => 'email', 'phone' => 'tel'][$field] ?? 'text' ?>"
                 <?= in_array($field, ['company', 'phone'], true) ? '' : 'required' ?> maxlength="200">
          <small class="error" data-error-for="<?= $e($field) ?>"><?= $e($errors[$field] ?? '') ?></small>
        </label>
      <?php endforeach ?>
      <button type="submit">Add</button>
    </form>
  <?php endif ?>
</section>

<section>
  <h2>Contacts (<?= count($contacts) ?>)</h2>
  <input id="contact-filter" type="search" placeholder="Filter…" aria-label="Filter contacts" hidden>
  <table id="contacts">
    <thead><tr><th>Name</th><th>Email</th><th>Company</th><th>Phone</th><th>Status</th></tr></thead>
    <tbody>
    <?php foreach ($contacts as $c): ?>
      <tr>
        <td><?= $e($c['name']) ?></td>
        <td><a href="mailto:<?= $e($c['email']) ?>"><?= $e($c['email']) ?></a></td>
        <td><?= $e($c['company'] ?? '') ?></td>
        <td><?= $e($c['phone'] ?? '') ?></td>
        <td><?= $c['processed_at'] === null ? 'new' : 'processed' ?></td>
      </tr>
    <?php endforeach ?>
    <?php if ($contacts === []): ?>
      <tr><td colspan="5">No contacts yet.</td></tr>
    <?php endif ?>
    </tbody>
  </table>
</section>
