<?php /** @var callable $e @var callable $asset @var string $content */ ?>
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>CRM GDB Consulting</title>
  <!-- Hashed names from public/build/manifest.json: each release names its own assets. -->
  <link rel="stylesheet" href="<?= $e($asset('app.css')) ?>">
  <script src="<?= $e($asset('app.js')) ?>" defer></script>
</head>
<body>
  <header><h1>CRM GDB Consulting</h1></header>
  <main><?= $content /* already escaped by the inner template */ ?></main>
</body>
</html>
