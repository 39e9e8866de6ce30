"""Post-training stages on trl: SFT with an audio collator and GRPO with an audio-aware trainer."""
