"""One blueprint per endpoint group."""
