"""The index: an SQL database (SQLite or PostgreSQL) describing every stored instance."""
