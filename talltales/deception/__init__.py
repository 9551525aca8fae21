"""Study 2: Tall Tales — deception against a corrupted judge."""
