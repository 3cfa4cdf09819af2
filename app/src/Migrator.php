<?php

declare(strict_types=1);

namespace Crm;

use PDO;

/**
 * The schema is owned by migrations/NNN_name.sql (or NNN_name.DRIVER.sql for one database only),
 * applied in order; each applied version is a row of schema_version. Plain SQL that SQLite and
 * PostgreSQL both take (CREATE TABLE, ALTER TABLE ... ADD COLUMN).
 */
final class Migrator
{
    public function __construct(private readonly string $dir)
    {
    }

    /** The migrations shipped with this release (app/migrations). */
    public static function ofRelease(): self
    {
        return new self(dirname(__DIR__) . '/migrations');
    }

    /** The version the database is at: 0 before any migration ran (no schema_version table). */
    public static function current(PDO $pdo): int
    {
        try {
            return (int) $pdo->query('SELECT MAX(version) FROM schema_version')->fetchColumn();
        } catch (\PDOException) {
            return 0;
        }
    }

    /** The newest version this release ships: the schema it needs. */
    public function latest(): int
    {
        $versions = array_keys($this->migrations(null));

        return $versions === [] ? 0 : max($versions);
    }

    /** @throws SchemaOutdated when the database is older than this release needs */
    public function requireCurrent(PDO $pdo): void
    {
        $at = self::current($pdo);
        $needs = $this->latest();
        if ($at < $needs) {
            throw new SchemaOutdated($at, $needs);
        }
    }

    /**
     * Applies every migration newer than the database, all in one transaction: on any error
     * nothing is applied. A second migrator waits for the first (write lock), then finds
     * nothing left to do.
     *
     * @param callable(string):void $say
     * @return list<string> the names of the migrations applied
     */
    public function migrate(PDO $pdo, callable $say): array
    {
        $driver = (string) $pdo->getAttribute(PDO::ATTR_DRIVER_NAME);
        $pdo->exec('CREATE TABLE IF NOT EXISTS schema_version (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL
        )');
        if ($driver === 'sqlite') {
            $pdo->exec('BEGIN IMMEDIATE');
        } else {
            $pdo->exec('BEGIN');
            $pdo->exec('LOCK TABLE schema_version IN EXCLUSIVE MODE');
        }
        try {
            $at = self::current($pdo);
            $applied = [];
            $record = $pdo->prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)');
            foreach ($this->migrations($driver) as $version => [$name, $file]) {
                if ($version <= $at) {
                    continue;
                }
                $say("applying $name");
                $sql = file_get_contents($file);
                if ($sql === false) {
                    throw new \RuntimeException("cannot read $file");
                }
                try {
                    $pdo->exec($sql);
                } catch (\PDOException $e) {
                    throw new \RuntimeException("$name: " . $e->getMessage(), 0, $e);
                }
                $record->execute([$version, $name, gmdate('Y-m-d\TH:i:s\Z')]);
                $applied[] = $name;
            }
            $pdo->exec('COMMIT');
        } catch (\Throwable $e) {
            $pdo->exec('ROLLBACK');
            throw $e;
        }

        return $applied;
    }

    /**
     * version => [name, file] in order, for $driver (null: every version, any driver).
     *
     * @return array<int, array{0:string, 1:string}>
     */
    private function migrations(?string $driver): array
    {
        $found = [];
        foreach (glob($this->dir . '/*.sql') ?: [] as $file) {
            $name = basename($file, '.sql');
            if (!preg_match('/^(\d+)_[a-z0-9_]+(?:\.([a-z]+))?$/', $name, $m)) {
                throw new \RuntimeException("$file: a migration is named NNN_name.sql or NNN_name.DRIVER.sql");
            }
            $version = (int) $m[1];
            $for = $m[2] ?? '';
            if ($driver !== null && $for !== '' && $for !== $driver) {
                continue;
            }
            // The file for this driver wins over the plain one.
            if (!isset($found[$version]) || $for !== '') {
                $found[$version] = [preg_replace('/\.[a-z]+$/', '', $name), $file];
            }
        }
        ksort($found);

        return $found;
    }
}
