"""sphinx_v benchmark family: SPHINX-V's (Draw-and-Understand) own evaluations — multi-region
referring classification, regional OCR, brief region captions, LVIS binary choice (Ferret's
protocol), LLaVA-Bench and VCR (PROTOCOLS_WAVE2.md §A-§G)."""
