"""The broker's storage: its store on SQLite or PostgreSQL, the typed operations it executes, the directory's tables."""
