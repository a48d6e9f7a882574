"""The demo kit (tiny model and data) against transformers, tokenizers and tiktoken."""
