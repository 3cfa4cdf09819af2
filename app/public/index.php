<?php

// Front controller: nginx sends every non-static request here.
declare(strict_types=1);

require dirname(__DIR__) . '/vendor/autoload.php';

use Crm\App;
use Crm\Database;
use Crm\Response;
use Crm\SchemaOutdated;

try {
    $app = new App(Database::dataDir(), $_SERVER, $_POST, $_COOKIE, (string) file_get_contents('php://input'));
    $response = $app->handle();
} catch (SchemaOutdated $e) {
    error_log($e->getMessage());
    $response = new Response(503, "Service Unavailable: the database is older than this release (its migration has not run)\n", ['Content-Type' => 'text/plain; charset=utf-8']);
} catch (Throwable $e) {
    // Details go to the log (php-fpm's stderr), never to the client.
    error_log((string) $e);
    $response = new Response(500, "Internal Server Error\n", ['Content-Type' => 'text/plain; charset=utf-8']);
}

$response
    ->withHeader('X-Content-Type-Options', 'nosniff')
    ->withHeader('X-Frame-Options', 'DENY')
    ->send();
