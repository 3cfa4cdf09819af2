<?php

declare(strict_types=1);

namespace Crm;

use PDO;

/**
 * Opens the database: PostgreSQL when DB_HOST is set (a swarm stack: every php replica, on any
 * node, shares it), else the SQLite file of the data directory (`up`, Compose deploys). The web
 * app and the worker both go through here. The schema belongs to the migrations (Migrator,
 * bin/migrate.php), never created here.
 *
 *   DB_HOST, DB_PORT (5432), DB_NAME (crm), DB_USER (crm)
 *   DB_PASSWORD_FILE   a file holding the password (a swarm secret), else DB_PASSWORD
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
        $options = [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
        ];
        $host = self::env('DB_HOST');
        if ($host !== null) {
            $dsn = sprintf(
                'pgsql:host=%s;port=%s;dbname=%s;connect_timeout=5',
                $host,
                self::env('DB_PORT') ?? '5432',
                self::env('DB_NAME') ?? 'crm',
            );

            return new PDO($dsn, self::env('DB_USER') ?? 'crm', self::password(), $options);
        }

        if (!is_dir($dataDir) && !@mkdir($dataDir, 0775, true) && !is_dir($dataDir)) {
            throw new \RuntimeException("storage directory $dataDir does not exist and cannot be created");
        }
        $pdo = new PDO('sqlite:' . $dataDir . '/crm.sqlite', null, null, $options);
        // php-fpm and the worker container write concurrently: wait for locks instead of failing.
        $pdo->exec('PRAGMA busy_timeout = 5000');
        $pdo->exec('PRAGMA journal_mode = WAL');

        return $pdo;
    }

    /** Proves the database can be read and written (a write lock is taken, nothing is changed). */
    public static function check(PDO $pdo): void
    {
        $pdo->query('SELECT COUNT(*) FROM contacts')->fetchColumn();
        if ($pdo->getAttribute(PDO::ATTR_DRIVER_NAME) === 'sqlite') {
            $pdo->exec('BEGIN IMMEDIATE');
            $pdo->exec('ROLLBACK');

            return;
        }
        // A server in recovery or read-only mode refuses this lock.
        $pdo->exec('BEGIN');
        try {
            $pdo->exec('LOCK TABLE contacts IN ROW EXCLUSIVE MODE');
        } finally {
            $pdo->exec('ROLLBACK');
        }
    }

    /** Data directory: APP_DATA_DIR if set (tests), else app/var/data. */
    public static function dataDir(): string
    {
        return self::env('APP_DATA_DIR') ?? dirname(__DIR__) . '/var/data';
    }

    /** The password from the file DB_PASSWORD_FILE names (a secret, never in the environment). */
    private static function password(): ?string
    {
        $file = self::env('DB_PASSWORD_FILE');
        if ($file === null) {
            return self::env('DB_PASSWORD');
        }
        $password = @file_get_contents($file);
        if ($password === false) {
            throw new \RuntimeException("cannot read the database password from DB_PASSWORD_FILE ($file)");
        }

        return trim($password);
    }

    private static function env(string $name): ?string
    {
        $value = getenv($name);

        return $value === false || $value === '' ? null : $value;
    }
}
