<?php

declare(strict_types=1);

namespace Kiora\DevTools;

/** Runs `php -l` on every .php file under the given paths. */
final class Lint
{
    /**
     * @param list<string> $paths files or directories
     * @return list<string> one message per broken file (empty when all is fine)
     */
    public static function run(array $paths): array
    {
        $failures = [];
        foreach (self::files($paths) as $file) {
            exec(escapeshellarg(PHP_BINARY) . ' -l ' . escapeshellarg($file) . ' 2>&1', $output, $code);
            if ($code !== 0) {
                $failures[] = trim(implode("\n", $output));
            }
            $output = [];
        }

        return $failures;
    }

    /** @return iterable<string> */
    private static function files(array $paths): iterable
    {
        foreach ($paths as $path) {
            if (is_file($path)) {
                yield $path;
                continue;
            }
            $it = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($path, \FilesystemIterator::SKIP_DOTS));
            foreach ($it as $file) {
                if ($file->getExtension() === 'php') {
                    yield $file->getPathname();
                }
            }
        }
    }
}
