<?php

declare(strict_types=1);

namespace Crm;

use PDO;

/** The HTTP application: routes and their handlers. public/index.php feeds it the request. */
final class App
{
    private ?PDO $pdo = null;
    private readonly Router $router;
    private readonly View $view;

    /**
     * @param array<string,mixed> $server  $_SERVER
     * @param array<string,mixed> $post    $_POST
     * @param array<string,mixed> $cookies $_COOKIE
     */
    public function __construct(
        private readonly string $dataDir,
        private readonly array $server = [],
        private readonly array $post = [],
        private readonly array $cookies = [],
        private readonly string $body = '',
    ) {
        $root = dirname(__DIR__);
        $this->view = new View($root . '/templates', $root . '/public');
        $this->router = (new Router())
            ->add('GET', '/', $this->index(...))
            ->add('POST', '/contacts', $this->addFromForm(...))
            ->add('GET', '/api/contacts', $this->apiList(...))
            ->add('POST', '/api/contacts', $this->apiAdd(...))
            ->add('GET', '/health', $this->health(...));
    }

    public function handle(): Response
    {
        $method = strtoupper((string) ($this->server['REQUEST_METHOD'] ?? 'GET'));
        $path = parse_url((string) ($this->server['REQUEST_URI'] ?? '/'), PHP_URL_PATH) ?: '/';

        return $this->router->dispatch($method, $path);
    }

    // --- HTML -------------------------------------------------------------------------

    private function index(): Response
    {
        parse_str((string) ($this->server['QUERY_STRING'] ?? ''), $query);

        return $this->page(['flash' => ($query['added'] ?? null) === '1' ? 'Contact added.' : null]);
    }

    private function addFromForm(): Response
    {
        $csrf = $this->csrf();
        if ($csrf === null) {
            return new Response(503, "Adding contacts is disabled: APP_SECRET is not configured.\n");
        }
        if (!$csrf->isValid($this->cookies[Csrf::COOKIE] ?? null, $this->post[Csrf::FIELD] ?? null)) {
            return new Response(403, "Invalid or expired form, please reload the page.\n");
        }

        [$contact, $errors] = ContactValidator::validate($this->post);
        if ($contact !== null) {
            try {
                $this->contacts()->add($contact);

                return Response::redirect('/?added=1');
            } catch (DuplicateEmail $e) {
                $errors = ['email' => $e->getMessage()];
            }
        }

        // Re-render the form with what the user typed and what is wrong with it.
        return $this->page(['errors' => $errors, 'old' => $this->post], 422);
    }

    private function page(array $params, int $status = 200): Response
    {
        $csrf = $this->csrf();
        $nonce = $this->cookies[Csrf::COOKIE] ?? null;
        $newNonce = !is_string($nonce) || !preg_match('/^[0-9a-f]{32}$/', $nonce);
        if ($newNonce) {
            $nonce = Csrf::newNonce();
        }

        $html = $this->view->render('contacts', $params + [
            'contacts' => $this->contacts()->all(),
            'token' => $csrf?->token($nonce),
            'errors' => [],
            'old' => [],
            'flash' => null,
        ]);
        $response = Response::html($html, $status)->withHeader('Cache-Control', 'no-store');

        return $newNonce
            ? $response->withHeader('Set-Cookie', Csrf::COOKIE . "=$nonce; Path=/; HttpOnly; SameSite=Lax")
            : $response;
    }

    // --- JSON API -------------------------------------------------------------------

    private function apiList(): Response
    {
        return Response::json(['contacts' => $this->contacts()->all()]);
    }

    private function apiAdd(): Response
    {
        // Requiring JSON also keeps plain cross-site HTML forms out (they cannot send it).
        if (!str_starts_with(strtolower((string) ($this->server['CONTENT_TYPE'] ?? '')), 'application/json')) {
            return Response::json(['error' => 'Content-Type must be application/json'], 415);
        }
        try {
            $input = json_decode($this->body, true, 8, JSON_THROW_ON_ERROR);
        } catch (\JsonException) {
            return Response::json(['error' => 'request body is not valid JSON'], 400);
        }

        [$contact, $errors] = ContactValidator::validate($input);
        if ($contact === null) {
            return Response::json(['errors' => $errors], 422);
        }
        try {
            return Response::json($this->contacts()->add($contact), 201);
        } catch (DuplicateEmail $e) {
            return Response::json(['errors' => ['email' => $e->getMessage()]], 422);
        }
    }

    /**
     * 200 only when the database can be read and written and is at the schema this release
     * needs; load balancers and healthchecks use it.
     */
    private function health(): Response
    {
        try {
            Database::check($this->pdo());
            $counts = $this->contacts()->counts();
        } catch (SchemaOutdated $e) {
            // Storage works but this release must not serve on it: its migrations did not run.
            error_log('health: ' . $e->getMessage());

            return Response::json(['status' => 'error', 'storage' => 'ok', 'schema' => $e->getMessage()], 503)
                ->withHeader('Cache-Control', 'no-store');
        } catch (\Throwable $e) {
            error_log('health: storage unusable: ' . $e->getMessage());

            return Response::json(['status' => 'error', 'storage' => 'unavailable'], 503)
                ->withHeader('Cache-Control', 'no-store');
        }

        return Response::json([
            'status' => 'ok',
            'storage' => 'ok',
            'contacts' => $counts['total'],
            'time' => gmdate('Y-m-d\TH:i:s\Z'),
        ])->withHeader('Cache-Control', 'no-store');
    }

    // --- helpers --------------------------------------------------------------------

    private function pdo(): PDO
    {
        return $this->pdo ??= Database::open($this->dataDir);
    }

    private function contacts(): ContactRepository
    {
        return new ContactRepository($this->pdo());
    }

    /** null when APP_SECRET is missing: the page still works, the form is disabled. */
    private function csrf(): ?Csrf
    {
        try {
            return Csrf::fromEnv();
        } catch (\RuntimeException) {
            return null;
        }
    }
}
