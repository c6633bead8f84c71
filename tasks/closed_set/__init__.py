"""closed_set: the board of closed-set classification, regional OCR and REC (its task cards
arrive with the RegionGPT and SPHINX-V suites)."""
