<?php

declare(strict_types=1);

namespace Kiora\DevTools;

/** Just enough assertions for plain-PHP self-checks (no PHPUnit available offline). */
final class Check
{
    private int $passed = 0;
    /** @var list<string> */
    private array $failed = [];

    public function that(bool $condition, string $what): void
    {
        if ($condition) {
            $this->passed++;
        } else {
            $this->failed[] = $what;
        }
    }

    public function same(mixed $expected, mixed $actual, string $what): void
    {
        $this->that($expected === $actual, $what . ' (expected ' . var_export($expected, true)
            . ', got ' . var_export($actual, true) . ')');
    }

    /** Prints a summary; returns the process exit code. */
    public function report(): int
    {
        foreach ($this->failed as $what) {
            fwrite(STDERR, "FAIL: $what\n");
        }
        printf("%d passed, %d failed\n", $this->passed, count($this->failed));

        return $this->failed === [] ? 0 : 1;
    }
}
