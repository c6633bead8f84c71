"""vcr benchmark family: Visual Commonsense Reasoning 1.0 val, Q->A, QA->R and Q->AR
(SPHINX-V Table 11; PROTOCOLS_WAVE2.md §F)."""
