"""gcg benchmark family: grounded captioning with masks (GranD-f GCG, MGLMM's MGSC)."""
