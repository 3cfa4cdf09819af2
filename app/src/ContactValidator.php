<?php

declare(strict_types=1);

namespace Crm;

/** Turns untrusted input (form or JSON) into a clean contact, or a list of errors per field. */
final class ContactValidator
{
    /**
     * @return array{0: ?array{name:string,email:string,company:?string,phone:?string}, 1: array<string,string>}
     *         [contact, []] when valid, [null, errors] otherwise
     */
    public static function validate(mixed $input): array
    {
        if (!is_array($input)) {
            return [null, ['body' => 'expected an object with name, email and optional company and phone']];
        }

        $name = self::string($input['name'] ?? null);
        $email = self::string($input['email'] ?? null);
        $company = self::string($input['company'] ?? null);
        $phone = self::string($input['phone'] ?? null);

        $errors = [];
        if ($name === null || $name === '') {
            $errors['name'] = 'name is required';
        } elseif (!self::fits($name)) {
            $errors['name'] = 'name must be valid text of at most 200 characters';
        }
        if ($email === null || filter_var($email, FILTER_VALIDATE_EMAIL) === false) {
            $errors['email'] = 'a valid email is required';
        }
        if ($company !== null && !self::fits($company)) {
            $errors['company'] = 'company must be valid text of at most 200 characters';
        }
        if ($phone !== null && $phone !== '' && preg_match('/^\+?[0-9 ().-]{3,40}$/', $phone) !== 1) {
            $errors['phone'] = 'phone must be digits, spaces and + ( ) . - (at most 40)';
        }
        if ($errors !== []) {
            return [null, $errors];
        }

        return [[
            'name' => $name,
            'email' => strtolower($email),
            'company' => $company === '' ? null : $company,
            'phone' => $phone === '' ? null : $phone,
        ], []];
    }

    /** Valid UTF-8 and at most 200 characters (PCRE is always there, mbstring may not be). */
    private static function fits(string $value): bool
    {
        return preg_match('/^.{0,200}$/us', $value) === 1;
    }

    /** Trimmed string, or null for anything that is not a string (arrays, numbers from JSON...). */
    private static function string(mixed $value): ?string
    {
        return is_string($value) ? trim($value) : null;
    }
}
