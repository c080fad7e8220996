"""Corpora: documents, frozen corpus files, synthetic generation, and real-dataset loaders."""
