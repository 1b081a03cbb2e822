"""Infrastructure the chat side runs on: the job queue and its worker, shared state in Redis, metrics,
scheduled backups. No platform and no chat logic lives here."""
