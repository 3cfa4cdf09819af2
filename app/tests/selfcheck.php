<?php

// Self-checks of the domain code, run with `composer test` in a dev install
// (uses kiora/dev-tools, so it needs require-dev). Uses a throw-away SQLite dir.
declare(strict_types=1);

require dirname(__DIR__) . '/vendor/autoload.php';

use Crm\App;
use Crm\ContactRepository;
use Crm\ContactValidator;
use Crm\Csrf;
use Crm\Database;
use Crm\DuplicateEmail;
use Crm\Migrator;
use Crm\SchemaOutdated;
use Crm\View;
use Kiora\DevTools\Check;

$t = new Check();

// Validation
[$c, $errors] = ContactValidator::validate(['name' => ' Ada ', 'email' => 'ADA@Example.com']);
$t->same(['name' => 'Ada', 'email' => 'ada@example.com', 'company' => null, 'phone' => null], $c, 'valid contact is normalised');
[, $errors] = ContactValidator::validate(['name' => 'Ada', 'email' => 'a@b.c', 'phone' => 'call me']);
$t->same(['phone'], array_keys($errors), 'a phone that is not a number is rejected');
[, $errors] = ContactValidator::validate(['name' => '', 'email' => 'nope']);
$t->same(['name', 'email'], array_keys($errors), 'empty name and bad email are rejected');
[, $errors] = ContactValidator::validate(['name' => ['x'], 'email' => 1]);
$t->same(['name', 'email'], array_keys($errors), 'non-string JSON values are rejected');
[, $errors] = ContactValidator::validate('"a string"');
$t->that(isset($errors['body']), 'a non-object body is rejected');

// Escaping
$t->same('&lt;script&gt;&quot;x&quot;&apos;', View::e('<script>"x"\''), 'HTML is escaped');

// CSRF
$csrf = new Csrf(str_repeat('k', 32));
$nonce = Csrf::newNonce();
$t->that($csrf->isValid($nonce, $csrf->token($nonce)), 'CSRF token matches its nonce');
$t->that(!$csrf->isValid($nonce, $csrf->token(Csrf::newNonce())), 'CSRF token of another nonce is refused');
$t->that(!(new Csrf(str_repeat('x', 32)))->isValid($nonce, $csrf->token($nonce)), 'CSRF token of another secret is refused');

// Repository + worker logic on a temporary database
// Migrations: a new database needs them; the baseline takes a database of the releases before.
$dir = sys_get_temp_dir() . '/crm-selfcheck-' . bin2hex(random_bytes(4));
$migrator = Migrator::ofRelease();
$t->that($migrator->latest() >= 2, 'the release ships its migrations');
try {
    Database::open($dir);
    $t->that(false, 'an unmigrated database is refused');
} catch (SchemaOutdated $e) {
    $t->same([0, $migrator->latest()], [$e->at, $e->needs], 'an unmigrated database is refused');
}
$old = Database::connect("$dir-old");
$old->exec('CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, company TEXT, created_at TEXT NOT NULL, processed_at TEXT)');
$old->exec("INSERT INTO contacts (name, email, created_at) VALUES ('Old', 'old@example.com', '2026-01-01T00:00:00Z')");
$t->same(['001_contacts', '002_contacts_phone'], $migrator->migrate($old, fn () => null), 'a database of before migrations is taken as the baseline');
$t->same([['name' => 'Old', 'phone' => null]], $old->query('SELECT name, phone FROM contacts')->fetchAll(), 'its rows are kept');
$t->same([], $migrator->migrate($old, fn () => null), 'applied migrations never run twice');
$broken = sys_get_temp_dir() . '/crm-selfcheck-migrations-' . bin2hex(random_bytes(4));
mkdir($broken);
file_put_contents("$broken/001_a.sql", 'CREATE TABLE a (x TEXT);');
file_put_contents("$broken/002_b.sql", 'ALTER TABLE a ADD COLUMN y TEXT; SELECT * FROM missing;');
try {
    (new Migrator($broken))->migrate($fresh = Database::connect("$dir-broken"), fn () => null);
    $t->that(false, 'a failing migration is an error');
} catch (RuntimeException $e) {
    $t->that(str_starts_with($e->getMessage(), '002_b: '), 'a failing migration is an error naming it');
    $t->same(0, Migrator::current($fresh), 'and nothing of the run is applied');
}
$pdo = Database::connect($dir);
$migrator->migrate($pdo, fn () => null);
$pdo = Database::open($dir);
Database::check($pdo);
$repo = new ContactRepository($pdo);
$added = $repo->add(['name' => 'Ada', 'email' => 'ada@example.com', 'company' => 'Analytical']);
$t->same('Ada', $added['name'], 'contact is stored');
try {
    $repo->add(['name' => 'Ada 2', 'email' => 'ada@example.com', 'company' => null]);
    $t->that(false, 'duplicate email is refused');
} catch (DuplicateEmail) {
    $t->that(true, 'duplicate email is refused');
}
$t->same(['total' => 1, 'processed' => 0, 'pending' => 1], $repo->counts(), 'new contact is pending');
$t->same(1, $repo->markProcessed(), 'worker marks it processed');
$t->same(0, $repo->markProcessed(), 'and only once');

// The HTTP app end to end (no server needed)
putenv("APP_DATA_DIR=$dir");
$api = fn (string $method, string $uri, string $body = '') => (new App($dir, [
    'REQUEST_METHOD' => $method, 'REQUEST_URI' => $uri, 'CONTENT_TYPE' => 'application/json',
], [], [], $body))->handle();
$t->same(200, $api('GET', '/health')->status, 'GET /health is 200');
$t->same(201, $api('POST', '/api/contacts', '{"name":"Bob","email":"bob@example.com","phone":"+33 1 23 45 67 89"}')->status, 'POST /api/contacts is 201');
$t->same(422, $api('POST', '/api/contacts', '{"name":"","email":"x"}')->status, 'invalid contact is 422');
$t->same(400, $api('POST', '/api/contacts', '{oops')->status, 'broken JSON is 400');
$t->same(2, count(json_decode($api('GET', '/api/contacts')->body, true)['contacts']), 'GET /api/contacts lists both');
$t->same(404, $api('GET', '/nope')->status, 'unknown path is 404');
$t->same(405, $api('DELETE', '/api/contacts')->status, 'wrong method is 405');

foreach ([$dir, "$dir-old", "$dir-broken", $broken] as $d) {
    array_map('unlink', glob("$d/*"));
    rmdir($d);
}
exit($t->report());
