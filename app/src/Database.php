<?php

declare(strict_types=1);

namespace Crm;

use PDO;

/**
 * Opens the SQLite database. The web app and the worker share the file, so both go through here.
 * The schema belongs to the migrations (Migrator, bin/migrate.php), never created here.
 */
final class Database
{
    /**
     * The database, checked to be at the schema this release needs.
     *
     * @throws SchemaOutdated when its migrations have not run yet
     */
    public static function open(string $dataDir): PDO
    {
        $pdo = self::connect($dataDir);
        Migrator::ofRelease()->requireCurrent($pdo);

        return $pdo;
    }

    /** The database as it is, whatever its schema (for the migrator). */
    public static function connect(string $dataDir): PDO
    {
        if (!is_dir($dataDir) && !@mkdir($dataDir, 0775, true) && !is_dir($dataDir)) {
            throw new \RuntimeException("storage directory $dataDir does not exist and cannot be created");
        }

        $pdo = new PDO('sqlite:' . $dataDir . '/crm.sqlite', null, null, [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
        ]);
        // php-fpm and the worker container write concurrently: wait for locks instead of failing.
        $pdo->exec('PRAGMA busy_timeout = 5000');
        $pdo->exec('PRAGMA journal_mode = WAL');

        return $pdo;
    }

    /** Proves the database can be read and written (a write lock is taken, nothing is changed). */
    public static function check(PDO $pdo): void
    {
        $pdo->query('SELECT COUNT(*) FROM contacts')->fetchColumn();
        $pdo->exec('BEGIN IMMEDIATE');
        $pdo->exec('ROLLBACK');
    }

    /** Data directory: APP_DATA_DIR if set (tests), else app/var/data. */
    public static function dataDir(): string
    {
        $dir = getenv('APP_DATA_DIR');

        return $dir !== false && $dir !== '' ? $dir : dirname(__DIR__) . '/var/data';
    }
}
