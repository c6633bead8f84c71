"""closed_set: closed-set region classification and comprehension over candidates
(RegionGPT's COCO classification and RefCOCOg REC; SPHINX-V's cards arrive with its suite)
and the likelihood-ranking protocol."""
