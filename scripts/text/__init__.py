"""The tokenizer and chat templates against tiktoken and openai-harmony."""
