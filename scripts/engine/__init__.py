"""The native engine against transformers and PEFT (gptoss_ref.py and lora_ref.py are the reference side)."""
