"""refseg benchmark family: referring expression segmentation (RefCOCO/+/g) and gRefCOCO."""
