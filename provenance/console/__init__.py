"""The console: server-rendered pages for trust and safety, cameo owners and auditors, served by the HTTP
service under `/console` (sessions with CSRF-protected forms; read pages work without script)."""
