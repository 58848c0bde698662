"""Event generator for CMS-2012-layout ROOT files (see sparkad.generator.api and docs/generator.md)."""


def __getattr__(name):  # lazy: `from sparkad.generator import generate` without importing uproot eagerly
    if name == "generate":
        from .api import generate

        return generate
    raise AttributeError(name)
