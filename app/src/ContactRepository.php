<?php

declare(strict_types=1);

namespace Crm;

use PDO;
use PDOException;

final class ContactRepository
{
    public function __construct(private readonly PDO $pdo)
    {
    }

    /** @return list<array{id:int,name:string,email:string,company:?string,phone:?string,created_at:string,processed_at:?string}> */
    public function all(): array
    {
        $rows = $this->pdo->query('SELECT * FROM contacts ORDER BY LOWER(name), id')->fetchAll();

        return array_map(self::hydrate(...), $rows);
    }

    /**
     * @param array{name:string,email:string,company:?string,phone:?string} $contact already validated
     * @throws DuplicateEmail
     */
    public function add(array $contact): array
    {
        $stmt = $this->pdo->prepare(
            'INSERT INTO contacts (name, email, company, phone, created_at) VALUES (:name, :email, :company, :phone, :created_at)'
        );
        try {
            $stmt->execute($contact + ['phone' => null, 'created_at' => gmdate('Y-m-d\TH:i:s\Z')]);
        } catch (PDOException $e) {
            // UNIQUE violations: SQLSTATE 23000 from SQLite, 23505 from PostgreSQL.
            if (in_array($e->getCode(), ['23000', '23505'], true)) {
                throw new DuplicateEmail($contact['email'], $e);
            }
            throw $e;
        }

        return $this->find((int) $this->pdo->lastInsertId());
    }

    public function find(int $id): ?array
    {
        $stmt = $this->pdo->prepare('SELECT * FROM contacts WHERE id = ?');
        $stmt->execute([$id]);
        $row = $stmt->fetch();

        return $row === false ? null : self::hydrate($row);
    }

    /** Marks every not-yet-processed contact as processed; returns how many were. */
    public function markProcessed(): int
    {
        // The time from PHP: the same text on SQLite and PostgreSQL.
        $stmt = $this->pdo->prepare('UPDATE contacts SET processed_at = ? WHERE processed_at IS NULL');
        $stmt->execute([gmdate('Y-m-d\TH:i:s\Z')]);

        return $stmt->rowCount();
    }

    /** @return array{total:int,processed:int,pending:int} */
    public function counts(): array
    {
        $row = $this->pdo->query(
            'SELECT COUNT(*) AS total, COUNT(processed_at) AS processed FROM contacts'
        )->fetch();

        return [
            'total' => (int) $row['total'],
            'processed' => (int) $row['processed'],
            'pending' => (int) $row['total'] - (int) $row['processed'],
        ];
    }

    private static function hydrate(array $row): array
    {
        $row['id'] = (int) $row['id'];

        return $row;
    }
}
