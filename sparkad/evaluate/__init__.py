"""`sparkad evaluate`: ROC, AUC and likelihood-ratio tables of a model on labelled HLF datasets."""
