"""Console accounts, password hashing, sessions, CSRF and role checks."""
