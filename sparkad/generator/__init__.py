"""Event generator for CMS-2012-layout ROOT files (see sparkad.generator.api)."""
