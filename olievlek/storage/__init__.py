"""Storage that every service shares: schema migrations (``migrations``)."""
