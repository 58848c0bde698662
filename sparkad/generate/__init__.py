"""Stage 1, the event generator: labelled CMS-2012-layout ROOT files (see sparkad.generate.api and
docs/generator.md)."""


def __getattr__(name):  # lazy: `from sparkad.generate import generate` without importing uproot eagerly
    if name == "generate":
        from sparkad.generate.api import generate

        return generate
    raise AttributeError(name)
