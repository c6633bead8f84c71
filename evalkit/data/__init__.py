"""``evalkit data``: what a task's data files are and whether they are the right ones
(:mod:`evalkit.data.check`), and turning official downloads into the files the tasks read
(:mod:`evalkit.data.prepare`; the converters live in their task families as
``tasks/<family>/prepare_<dataset>.py``). The command line is :mod:`evalkit.data.commands`.
"""
