"""The stages of one check: facts (from a plan and the knowledge), dosing, the engine (the only module that
imports the durable_rules C core), suggestions, findings. May import ivig_safety.knowledge and ivig_safety.model.
"""
