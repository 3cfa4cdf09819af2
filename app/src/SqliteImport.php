<?php

declare(strict_types=1);

namespace Crm;

use PDO;

/**
 * The contacts of a SQLite file (crm.sqlite of the data directory: every Compose target before
 * PostgreSQL) copied once into a PostgreSQL database the migrations have just created. Run by
 * the release command (bin/migrate.php), which gets the data directory mounted. Never merges:
 * only a database that was at version 0 before this run and holds no contact takes rows, in one
 * transaction (ids kept, the identity moved past them). The SQLite file is left where it is:
 * the release before this one still serves from it until the switch.
 */
final class SqliteImport
{
    public function __construct(private readonly string $file)
    {
    }

    /** The data directory's SQLite file. */
    public static function ofDataDir(string $dataDir): self
    {
        return new self($dataDir . '/crm.sqlite');
    }

    /**
     * @param int $versionBefore the database's version before the migrations of this run
     * @param callable(string):void $say
     * @return int the contacts copied
     */
    public function run(PDO $pg, int $versionBefore, callable $say): int
    {
        if ($pg->getAttribute(PDO::ATTR_DRIVER_NAME) !== 'pgsql' || $versionBefore !== 0
            || !is_file($this->file)) {
            return 0;
        }
        $sqlite = new PDO('sqlite:' . $this->file, null, null, [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::ATTR_DEFAULT_FETCH_MODE => PDO::FETCH_ASSOC,
        ]);
        $sqlite->exec('PRAGMA busy_timeout = 5000');
        $from = array_column($sqlite->query('PRAGMA table_info(contacts)')->fetchAll(), 'name');
        if ($from === []) {
            return 0;
        }
        $to = $pg->query("SELECT column_name FROM information_schema.columns WHERE table_name = 'contacts'")
            ->fetchAll(PDO::FETCH_COLUMN);
        $columns = array_values(array_intersect($from, $to));
        $list = implode(', ', $columns);
        $pg->exec('BEGIN');
        try {
            $pg->exec('LOCK TABLE contacts IN EXCLUSIVE MODE');
            if ((int) $pg->query('SELECT COUNT(*) FROM contacts')->fetchColumn() > 0) {
                $pg->exec('ROLLBACK');
                $say("not importing {$this->file}: the database already holds contacts");

                return 0;
            }
            $insert = $pg->prepare(sprintf(
                'INSERT INTO contacts (%s) VALUES (%s)',
                $list,
                implode(', ', array_fill(0, count($columns), '?')),
            ));
            $count = 0;
            foreach ($sqlite->query("SELECT $list FROM contacts ORDER BY id") as $row) {
                $insert->execute(array_values($row));
                $count++;
            }
            $pg->exec("SELECT setval(pg_get_serial_sequence('contacts', 'id'), GREATEST((SELECT COALESCE(MAX(id), 0) FROM contacts), 1), (SELECT COUNT(*) > 0 FROM contacts))");
            $pg->exec('COMMIT');
        } catch (\Throwable $e) {
            $pg->exec('ROLLBACK');
            throw new \RuntimeException("importing {$this->file}: " . $e->getMessage(), 0, $e);
        }
        $say("imported $count contact(s) from {$this->file}");

        return $count;
    }
}
