"""What is loaded from rules/: the product catalogue (products, vocabulary, class knowledge, guidelines), the
policy, the rules (loading and compiling), the fields rules may name, and the safe YAML reader.
May import ivig_safety.model only.
"""
