<?php

declare(strict_types=1);

namespace Crm;

/**
 * Signed double-submit CSRF protection for the HTML form, with no server-side session:
 * the browser holds a random nonce in a cookie and the form carries HMAC(APP_SECRET, nonce).
 * Another site can neither read the cookie nor compute the HMAC without the secret.
 */
final class Csrf
{
    public const COOKIE = 'crm_csrf';
    public const FIELD = '_token';

    public function __construct(private readonly string $secret)
    {
        if (strlen($secret) < 16) {
            throw new \RuntimeException('APP_SECRET must be set (at least 16 characters); see .env.example');
        }
    }

    /**
     * APP_SECRET comes from the environment at runtime (.env via compose), never from the image;
     * in a swarm from a Docker secret, whose file APP_SECRET_FILE names (never in an env var).
     */
    public static function fromEnv(): self
    {
        $file = getenv('APP_SECRET_FILE');
        if ($file !== false && $file !== '') {
            return new self(trim((string) @file_get_contents($file)));
        }

        return new self((string) getenv('APP_SECRET'));
    }

    public static function newNonce(): string
    {
        return bin2hex(random_bytes(16));
    }

    public function token(string $nonce): string
    {
        return hash_hmac('sha256', $nonce, $this->secret);
    }

    public function isValid(?string $nonce, mixed $token): bool
    {
        return is_string($nonce) && $nonce !== '' && is_string($token)
            && hash_equals($this->token($nonce), $token);
    }
}
