<?php

/**
 * Container healthcheck (exit 0 = healthy).
 *
 *   php bin/healthcheck.php          php image: asks php-fpm on 127.0.0.1:9000 for /health over
 *                                    FastCGI, so it proves FPM answers AND the storage works.
 *   php bin/healthcheck.php worker   -supervisor image: stats.json was rewritten recently,
 *                                    so the worker loop is alive and can write its storage.
 *
 * Plain PHP with no dependencies: the images carry no curl/cgi-fcgi just for this.
 */

declare(strict_types=1);

const FPM_ADDRESS = 'tcp://127.0.0.1:9000';
const WORKER_MAX_AGE_SECONDS = 30;

function unhealthy(string $why): never
{
    fwrite(STDERR, "unhealthy: $why\n");
    exit(1);
}

if (($argv[1] ?? '') === 'worker') {
    $dir = getenv('APP_DATA_DIR') ?: dirname(__DIR__) . '/var/data';
    clearstatcache();
    $mtime = @filemtime("$dir/stats.json");
    if ($mtime === false || time() - $mtime > WORKER_MAX_AGE_SECONDS) {
        unhealthy("$dir/stats.json not updated in the last " . WORKER_MAX_AGE_SECONDS . ' s');
    }
    exit(0);
}

// --- Minimal FastCGI client (https://fastcgi-archives.github.io/FastCGI_Specification.html) ---
const FCGI_BEGIN_REQUEST = 1, FCGI_END_REQUEST = 3, FCGI_PARAMS = 4, FCGI_STDIN = 5, FCGI_STDOUT = 6;

function record(int $type, string $content): string
{
    // version 1, type, request id 1, content length, no padding, reserved byte.
    return pack('CCnnCx', 1, $type, 1, strlen($content), 0) . $content;
}

function pairs(array $params): string
{
    $out = '';
    foreach ($params as $name => $value) {
        foreach ([strlen($name), strlen($value)] as $len) {
            // Lengths < 128 take one byte; longer ones four bytes with the top bit set.
            $out .= $len < 128 ? chr($len) : pack('N', $len | 0x80000000);
        }
        $out .= $name . $value;
    }

    return $out;
}

$socket = @stream_socket_client(FPM_ADDRESS, $errno, $errstr, 2);
if ($socket === false) {
    unhealthy("php-fpm not reachable at " . FPM_ADDRESS . ": $errstr");
}
stream_set_timeout($socket, 3);

$params = pairs([
    'GATEWAY_INTERFACE' => 'CGI/1.1',
    'SERVER_PROTOCOL' => 'HTTP/1.1',
    'REQUEST_METHOD' => 'GET',
    'REQUEST_URI' => '/health',
    'QUERY_STRING' => '',
    'SCRIPT_NAME' => '/index.php',
    'SCRIPT_FILENAME' => dirname(__DIR__) . '/public/index.php',
    'SERVER_NAME' => 'localhost',
    'REMOTE_ADDR' => '127.0.0.1',
]);
fwrite($socket, record(FCGI_BEGIN_REQUEST, pack('nCx5', 1, 0)) // role responder, close after
    . record(FCGI_PARAMS, $params) . record(FCGI_PARAMS, '') . record(FCGI_STDIN, ''));

$stdout = '';
while (true) {
    $header = fread($socket, 8);
    if ($header === false || strlen($header) < 8) {
        unhealthy('php-fpm closed the connection or timed out');
    }
    $h = unpack('Cversion/Ctype/nid/nlength/Cpadding', $header);
    $body = $h['length'] + $h['padding'] > 0 ? stream_get_contents($socket, $h['length'] + $h['padding']) : '';
    if ($h['type'] === FCGI_STDOUT) {
        $stdout .= substr($body, 0, $h['length']);
    } elseif ($h['type'] === FCGI_END_REQUEST) {
        break;
    }
}

// FPM sends "Status: 503 ..." for non-200 answers and no Status header for 200.
$headers = strstr($stdout, "\r\n\r\n", true) ?: $stdout;
$status = preg_match('/^Status: (\d{3})/mi', $headers, $m) ? (int) $m[1] : 200;
if ($status !== 200) {
    unhealthy("GET /health answered $status: " . trim(substr($stdout, strlen($headers))));
}
exit(0);
