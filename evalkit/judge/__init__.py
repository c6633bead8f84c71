"""LLM judging: an OpenAI-compatible client (async, bounded, retrying, cached) and the
review prompts of the released GPT-4 evaluation scripts."""
