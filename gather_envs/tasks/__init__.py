"""Task generation: one drafting module per family and the checked builder (records and scoring live below)."""
