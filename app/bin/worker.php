<?php

/**
 * Background worker (the process of the -supervisor image; its restart policy restarts it).
 * Every few seconds: marks new contacts as processed and writes var/data/stats.json.
 *
 *   php bin/worker.php           loop until SIGTERM/SIGINT
 *   php bin/worker.php --once    one pass, then exit (tests)
 */

declare(strict_types=1);

require dirname(__DIR__) . '/vendor/autoload.php';

use Crm\ContactRepository;
use Crm\Database;

const INTERVAL_SECONDS = 2;

function fail(string $message): never
{
    fwrite(STDERR, "worker: $message\n");
    exit(1);
}

$dataDir = Database::dataDir();
try {
    $pdo = Database::open($dataDir);
    Database::check($pdo);
} catch (Throwable $e) {
    fail("storage in $dataDir is unusable: " . $e->getMessage());
}
$contacts = new ContactRepository($pdo);

// Stop between passes, never in the middle of one, when docker stop asks.
$running = true;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    $stop = static function (int $signal) use (&$running): void {
        $running = false;
    };
    pcntl_signal(SIGTERM, $stop);
    pcntl_signal(SIGINT, $stop);
}

$once = in_array('--once', $argv, true);
fwrite(STDOUT, "worker: started (data in $dataDir)\n");

do {
    try {
        $processed = $contacts->markProcessed();
        if ($processed > 0) {
            fwrite(STDOUT, "worker: processed $processed new contact(s)\n");
        }
        $stats = $contacts->counts() + ['updated_at' => gmdate('Y-m-d\TH:i:s\Z')];
        // Write then rename, so readers never see a half-written file.
        $tmp = "$dataDir/stats.json.tmp";
        if (file_put_contents($tmp, json_encode($stats, JSON_PRETTY_PRINT) . "\n") === false || !rename($tmp, "$dataDir/stats.json")) {
            fail("cannot write $dataDir/stats.json");
        }
    } catch (PDOException $e) {
        fail('database error: ' . $e->getMessage());
    }

    // sleep() returns early when a signal arrives, so SIGTERM is handled within 2 s at worst.
    for ($i = 0; $running && !$once && $i < INTERVAL_SECONDS; $i++) {
        sleep(1);
    }
} while ($running && !$once);

fwrite(STDOUT, "worker: stopped\n");
