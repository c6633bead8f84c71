"""Training the bundled tiny Osprey (``python -m evalkit.models.osprey.training.train_tiny``).

Nothing in the runtime package (``evalkit.models.osprey``) imports from here: running a
checkpoint needs neither the tokenizer trainer, the shapes training data nor the loss.

* :mod:`.tiny` — the tiny model's sizes and its LLaMA-layout BPE tokenizer, built offline;
* :mod:`.tiny_data` — the shapes train split as question/answer turns;
* :mod:`.train_tiny` — the seeded training loop and its command line.
"""
