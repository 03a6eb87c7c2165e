"""HTTP layer: thin views that parse, call the domain and serialise."""
