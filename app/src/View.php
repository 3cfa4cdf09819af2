<?php

declare(strict_types=1);

namespace Crm;

/**
 * Renders plain-PHP templates from templates/. Templates print values only through
 * $e() (HTML escaping) and find compiled assets through $asset() (the build manifest).
 */
final class View
{
    private ?array $manifest = null;

    public function __construct(private readonly string $templateDir, private readonly string $publicDir)
    {
    }

    public static function e(mixed $value): string
    {
        // ENT_SUBSTITUTE: invalid UTF-8 becomes U+FFFD instead of an empty string.
        return htmlspecialchars((string) $value, ENT_QUOTES | ENT_SUBSTITUTE | ENT_HTML5, 'UTF-8');
    }

    /** Public URL of a compiled asset, e.g. "app.css" => "/build/app-3F2A9C1B.css". */
    public function asset(string $name): string
    {
        if ($this->manifest === null) {
            $file = $this->publicDir . '/build/manifest.json';
            $json = is_file($file) ? file_get_contents($file) : false;
            if ($json === false) {
                throw new \RuntimeException("$file is missing: run `npm ci && npm run build`");
            }
            $this->manifest = json_decode($json, true, 8, JSON_THROW_ON_ERROR);
        }

        return $this->manifest[$name] ?? throw new \RuntimeException("asset $name is not in the build manifest");
    }

    /** Renders $template inside layout.php. */
    public function render(string $template, array $params = []): string
    {
        $params['content'] = $this->include($template, $params);

        return $this->include('layout', $params);
    }

    private function include(string $template, array $params): string
    {
        $e = self::e(...);
        $asset = $this->asset(...);
        extract($params, EXTR_SKIP);
        ob_start();
        try {
            require $this->templateDir . '/' . $template . '.php';

            return (string) ob_get_contents();
        } finally {
            ob_end_clean();
        }
    }
}
