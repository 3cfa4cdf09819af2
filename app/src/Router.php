<?php

declare(strict_types=1);

namespace Crm;

/** Exact-path router: enough for a handful of routes, answers 404 and 405 itself. */
final class Router
{
    /** @var array<string, array<string, callable(): Response>> path => method => handler */
    private array $routes = [];

    public function add(string $method, string $path, callable $handler): self
    {
        $this->routes[$path][strtoupper($method)] = $handler;

        return $this;
    }

    public function dispatch(string $method, string $path): Response
    {
        $byMethod = $this->routes[$path] ?? null;
        if ($byMethod === null) {
            return self::error(404, 'Not Found', $path);
        }
        // HEAD is answered like GET; the SAPI drops the body.
        $handler = $byMethod[$method] ?? ($method === 'HEAD' ? $byMethod['GET'] ?? null : null);
        if ($handler === null) {
            return self::error(405, 'Method Not Allowed', $path)
                ->withHeader('Allow', implode(', ', array_keys($byMethod)));
        }

        return $handler();
    }

    /** JSON errors for the API, plain text elsewhere. */
    public static function error(int $status, string $message, string $path): Response
    {
        if (str_starts_with($path, '/api/') || $path === '/health') {
            return Response::json(['error' => $message], $status);
        }

        return new Response($status, "$message\n", ['Content-Type' => 'text/plain; charset=utf-8']);
    }
}
