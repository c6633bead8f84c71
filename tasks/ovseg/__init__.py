"""ovseg benchmark family: cards, reader(s), protocol and board columns."""
