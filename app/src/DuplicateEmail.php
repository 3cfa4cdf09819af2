<?php

declare(strict_types=1);

namespace Crm;

final class DuplicateEmail extends \RuntimeException
{
    public function __construct(string $email, ?\Throwable $previous = null)
    {
        parent::__construct("a contact with email $email already exists", 0, $previous);
    }
}
