"""The paper's tasks and corpora, as NumPy rows for the examples.

Plain modules the example scripts import (`from tasks.copy_sequence import
copy_sequence`); they are not part of the `keras_rmt` library. This file
imports nothing, so `import tasks.facts_in_noise` gives the module.
"""
