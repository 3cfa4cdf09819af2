<?php

declare(strict_types=1);

namespace Crm;

/** The database is older than this release's newest migration: its release command has not run. */
final class SchemaOutdated extends \RuntimeException
{
    public function __construct(public readonly int $at, public readonly int $needs)
    {
        parent::__construct(
            "database schema is at version $at, this release needs $needs: run its release command `php bin/migrate.php`"
        );
    }
}
