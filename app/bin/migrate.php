<?php

/**
 * The release command (label org.kiora.release-command of the php image): every deploy runs it
 * once, in a throwaway container of the new release with the target's .env and data, before
 * any traffic moves to it. Applies the pending migrations (migrations/) in one transaction; on
 * a new PostgreSQL database, then copies in the contacts of the data directory's SQLite file
 * (see SqliteImport).
 *
 *   php bin/migrate.php           apply what is pending; exit 1 (nothing applied) on any error
 *   php bin/migrate.php --status  the database's version and the release's, change nothing
 */

declare(strict_types=1);

require dirname(__DIR__) . '/vendor/autoload.php';

use Crm\Database;
use Crm\Migrator;
use Crm\SqliteImport;

$say = static fn (string $line) => fwrite(STDOUT, "migrate: $line\n");
$migrator = Migrator::ofRelease();
try {
    $pdo = Database::connect(Database::dataDir());
    $before = Migrator::current($pdo);
    if (in_array('--status', $argv, true)) {
        $say("database at version $before, this release needs " . $migrator->latest());
        exit(0);
    }
    $applied = $migrator->migrate($pdo, $say);
    // A Compose target's first deploy onto PostgreSQL: the contacts of its SQLite file.
    SqliteImport::ofDataDir(Database::dataDir())->run($pdo, $before, $say);
    $now = Migrator::current($pdo);
    $say($applied === []
        ? "database at version $now, nothing to apply (this release needs {$migrator->latest()})"
        : "database at version $now (was $before)");
} catch (Throwable $e) {
    fwrite(STDERR, 'migrate: failed, nothing was applied: ' . $e->getMessage() . "\n");
    exit(1);
}
