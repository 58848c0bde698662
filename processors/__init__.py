"""coffea processors: thin ProcessorABC wrappers around sparkad pure functions."""
