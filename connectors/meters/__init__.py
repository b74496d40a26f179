"""Smart gas meters reached over their own wire protocol (CJ/T 188 over a DTU's TCP stream)."""
