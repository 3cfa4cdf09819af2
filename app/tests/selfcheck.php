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
use Crm\View;
use Kiora\DevTools\Check;

$t = new Check();

// Validation
[$c, $errors] = ContactValidator::validate(['name' => ' Ada ', 'email' => 'ADA@Example.com']);
$t->same(['name' => 'Ada', 'email' => 'ada@example.com', 'company' => null], $c, 'valid contact is normalised');
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
$dir = sys_get_temp_dir() . '/crm-selfcheck-' . bin2hex(random_bytes(4));
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
$t->same(201, $api('POST', '/api/contacts', '{"name":"Bob","email":"bob@example.com"}')->status, 'POST /api/contacts is 201');
$t->same(422, $api('POST', '/api/contacts', '{"name":"","email":"x"}')->status, 'invalid contact is 422');
$t->same(400, $api('POST', '/api/contacts', '{oops')->status, 'broken JSON is 400');
$t->same(2, count(json_decode($api('GET', '/api/contacts')->body, true)['contacts']), 'GET /api/contacts lists both');
$t->same(404, $api('GET', '/nope')->status, 'unknown path is 404');
$t->same(405, $api('DELETE', '/api/contacts')->status, 'wrong method is 405');

array_map('unlink', glob("$dir/*"));
rmdir($dir);
exit($t->report());
